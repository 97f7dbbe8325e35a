"""Augmented views for augmentation-based specs (SimCLR-style p: "views of one sample are
neighbours").

``make_views`` is pure torch and vectorised over the batch and the views. All randomness is drawn
from the given generator, on the generator's device, in a fixed order, and then moved to the
data's device: the same generator state gives the same views wherever the data lives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IMAGE_MAX_SHIFT = 1  # pixels, in each direction
IMAGE_MAX_ROTATION = 15.0  # degrees, either way
IMAGE_MAX_ZOOM = 0.2  # scale in [0.8, 1.2]: zooming in crops the borders, out pads them
IMAGE_NOISE_STD = 0.05
IMAGE_PIXEL_DROPOUT = 0.05
VECTOR_NOISE_SCALE = 0.1
VECTOR_FEATURE_DROPOUT = 0.2


def make_views(
    x: torch.Tensor,
    n_views: int,
    generator: torch.Generator,
    image_shape: tuple[int, int] | None,
    max_shift: int = IMAGE_MAX_SHIFT,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Make ``n_views`` random augmentations of every row of ``x``.

    Takes ``x`` of shape (B, D) (floating point), ``n_views >= 1``, a generator, and the image
    shape (H, W) with H * W == D when the rows are flattened images, else None.

    Returns ``(views, index)``: ``views`` of shape (n_views * B, D), same dtype and device as
    ``x``, in view-major order (rows 0..B-1 are view 0 of samples 0..B-1, then view 1, ...);
    ``index`` of shape (n_views * B,), int64, giving the sample each view came from, so views of
    one sample share their index. ``x`` is not modified.

    Images (values assumed roughly in [0, 1]): a random affine map (rotation up to 15 degrees,
    zoom 0.8-1.2, so zooming in crops the borders, and a shift of up to ``max_shift`` pixels,
    one by default; 0 turns the whole geometric part off), bilinear with zero padding, then
    gaussian noise of std 0.05 and pixel dropout (p = 0.05; dropped pixels are set to 0).
    Plain vectors: gaussian noise of std 0.1 times each feature's standard deviation over the
    batch, and feature dropout (p = 0.2; dropped features set to 0, the rest not rescaled).
    """
    if x.ndim != 2:
        raise ValueError(f"make_views expects x of shape (B, D), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"make_views expects floating-point x, got {x.dtype}")
    if n_views < 1:
        raise ValueError(f"make_views needs n_views >= 1, got {n_views}")
    batch, dim = x.shape
    repeated = x.detach().repeat(n_views, 1)
    if image_shape is not None:
        height, width = image_shape
        if height * width != dim:
            raise ValueError(
                f"make_views: image_shape {image_shape} has {height * width} pixels, "
                f"but x has D={dim} features"
            )
        views = _augment_images(repeated, height, width, generator, max_shift)
    else:
        feature_std = x.detach().std(dim=0, unbiased=False)
        views = _augment_vectors(repeated, feature_std, generator)
    index = torch.arange(batch, device=x.device).repeat(n_views)
    return views, index


def _augment_images(
    flat: torch.Tensor, height: int, width: int, generator: torch.Generator, max_shift: int
) -> torch.Tensor:
    """Shift, add noise and drop pixels; ``flat`` is (N, H * W), returns a new (N, H * W)."""
    images = flat.reshape(-1, height, width)
    shifted = _random_affine(images, max_shift, generator) if max_shift > 0 else images
    noise = _randn(shifted.shape, generator, shifted) * IMAGE_NOISE_STD
    keep = _rand(shifted.shape, generator, shifted) >= IMAGE_PIXEL_DROPOUT
    return ((shifted + noise) * keep).reshape(flat.shape)


def _random_affine(
    images: torch.Tensor, max_shift: int, generator: torch.Generator
) -> torch.Tensor:
    """Rotate (up to IMAGE_MAX_ROTATION degrees), zoom (1 +- IMAGE_MAX_ZOOM: a crop when
    zooming in) and translate (up to ``max_shift`` pixels) each (H, W) image by its own draw,
    bilinear, zero outside the image."""
    count, height, width = images.shape
    u = _rand(torch.Size((count, 4)), generator, images) * 2 - 1  # uniform in [-1, 1]
    angle = u[:, 0] * math.radians(IMAGE_MAX_ROTATION)
    zoom = 1 + u[:, 1] * IMAGE_MAX_ZOOM
    # affine_grid maps output to input coordinates in [-1, 1]: the inverse transform
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift_x, shift_y = u[:, 2] * (2 * max_shift / width), u[:, 3] * (2 * max_shift / height)
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
    )
    grid = F.affine_grid(theta, [count, 1, height, width], align_corners=False)
    return F.grid_sample(images[:, None], grid, align_corners=False)[:, 0]


def _augment_vectors(
    flat: torch.Tensor, feature_std: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Add per-feature-scaled gaussian noise and drop features; returns a new (N, D)."""
    noise = _randn(flat.shape, generator, flat) * (VECTOR_NOISE_SCALE * feature_std)
    keep = _rand(flat.shape, generator, flat) >= VECTOR_FEATURE_DROPOUT
    return (flat + noise) * keep


def _randn(shape: torch.Size, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    drawn = torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return drawn.to(like.device)


def _rand(shape: torch.Size, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    drawn = torch.rand(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return drawn.to(like.device)
