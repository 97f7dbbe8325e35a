"""The normaliser of q summed on an interpolation grid (icon_dsl/train/interpolate.py) against
the exact sums over every pair: the grid's polynomials, its kernel sums, the normaliser's value
and gradient (per row and joint, 1-D and 2-D), convergence as the boxes shrink, the plan's
choice and its errors, and a t-SNE trained with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from icon_dsl.api import compile as compile_spec
from icon_dsl.train import interpolate, sparse
from icon_dsl.train.data import Dataset
from icon_dsl.train.errors import TrainError
from icon_dsl.train.plan import make_plan
from icon_dsl.train.runtime import train

SPECS = Path(__file__).resolve().parent.parent / "specs"


def clustered(n: int, dims: int = 2, spread: float = 120.0, seed: int = 0) -> torch.Tensor:
    """Points in 10 clusters over a square of side ``spread``, like a late t-SNE embedding."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(10, dims, dtype=torch.float64, generator=generator) * spread
    which = torch.randint(0, 10, (n,), generator=generator)
    return centres[which] + 4 * torch.randn(n, dims, dtype=torch.float64, generator=generator)


def student_t(d2: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + d2)


def exact(z: torch.Tensor, mass: torch.Tensor, joint: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The blocked exact normaliser (sparse.py) and its autograd gradient."""
    z = z.clone().requires_grad_()
    lse = sparse.exact_log_normaliser(z, sparse._student_t, joint, 256)
    value = lse * mass.sum() if joint else (mass * lse).sum()
    (gradient,) = torch.autograd.grad(value, z)
    return value.detach(), gradient


def test_the_polynomials_reproduce_positions_and_sum_to_one() -> None:
    z = clustered(500)
    grid = interpolate.Grid(z)
    low = z.min(0).values
    row, column = grid.index // (2 * grid.size), grid.index % (2 * grid.size)  # padded grid
    position = low + (torch.stack([row, column], -1) + 0.5) * grid.spacing  # (N, 9, 2)
    assert torch.allclose(grid.weight.sum(1), torch.ones(500, dtype=torch.float64), atol=1e-12)
    assert torch.allclose((grid.weight[:, :, None] * position).sum(1), z, atol=1e-9)
    assert grid.width <= interpolate.BOX_WIDTH


def test_kernel_sums_match_the_exact_sums() -> None:
    """Over j != i (the grid's own term taken off): median error 9e-4, largest 1.7e-2."""
    z = clustered(1500)
    charges = torch.rand(1500, 3, dtype=torch.float64)
    grid = interpolate.Grid(z)
    summed = grid.sums(grid.spectra(charges) * grid.kernel_on_grid(student_t, torch.float64))
    summed -= grid.own_terms(student_t)[:, None] * charges
    reference = student_t(torch.cdist(z, z) ** 2).fill_diagonal_(0) @ charges
    error = (summed - reference).abs() / reference
    assert float(error.median()) < 2e-3 and float(error.max()) < 3e-2


@pytest.mark.parametrize("joint", [False, True])
@pytest.mark.parametrize("dims", [1, 2])
def test_normaliser_and_gradient_match_the_exact_ones(joint: bool, dims: int) -> None:
    z = clustered(1200, dims)
    mass = torch.rand(1200, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    value, gradient = interpolate.log_normaliser(z, mass, sparse._student_t, joint)
    reference, expected = exact(z, mass, joint)
    assert float(value) == pytest.approx(float(reference), rel=2e-4)
    error = float((gradient - expected).norm() / expected.norm())
    cosine = float((gradient * expected).sum() / (gradient.norm() * expected.norm()))
    assert error < 0.06 and cosine > 0.998, (error, cosine)


def test_the_error_shrinks_with_the_boxes(monkeypatch: pytest.MonkeyPatch) -> None:
    z = clustered(1200)
    mass = torch.ones(1200, dtype=torch.float64)
    _, expected = exact(z, mass, False)
    errors = []
    for width in (2.0, 1.0, 0.5):
        monkeypatch.setattr(interpolate, "BOX_WIDTH", width)
        _, gradient = interpolate.log_normaliser(z, mass, sparse._student_t, False)
        errors.append(float((gradient - expected).norm() / expected.norm()))
    assert errors[0] > 2 * errors[1] > 4 * errors[2], errors


def test_a_diverged_embedding_gives_nan_not_an_error() -> None:
    z = clustered(100)
    z[3, 0] = float("inf")
    value, gradient = interpolate.log_normaliser(
        z, torch.ones(100, dtype=z.dtype), sparse._student_t, False
    )
    assert torch.isnan(value) and bool(torch.isnan(gradient).all())


def test_the_grid_is_capped_for_a_very_wide_embedding() -> None:
    grid = interpolate.Grid(clustered(200, spread=5000.0))
    assert grid.size == interpolate.MAX_GRID and grid.width > interpolate.BOX_WIDTH


def test_grid_lengths_have_only_small_prime_factors() -> None:
    assert [interpolate._smooth(n) for n in (50, 167, 501, 1001)] == [50, 180, 512, 1024]
    grid = interpolate.Grid(clustered(200, spread=480.0))
    assert interpolate._smooth(grid.size // interpolate.NODES) == grid.size // interpolate.NODES


def test_only_small_embeddings_of_neighbour_specs_interpolate() -> None:
    tsne = compile_spec(SPECS / "tsne.icon")
    data = Dataset(name="b", x=np.zeros((9000, 3), dtype=np.float32), y=None)
    assert make_plan(tsne, tsne.load(), data).normaliser == "interpolated"
    wide = compile_spec(
        "method wide\nmapper = table(dim=3)\np = gaussian(x, perplexity=30)\n"
        "q = student_t(f(x), dof=1)\nloss = kl(p, q)\n"
    )
    assert make_plan(wide, wide.load(), data).normaliser == "sampled"
    with pytest.raises(TrainError, match="for 1 or 2 dimensions; this mapper has dim=3"):
        make_plan(wide, wide.load(), data, normaliser="interpolated")
    kmeans = compile_spec(SPECS / "kmeans.icon")
    with pytest.raises(TrainError, match="interpolated is for neighbour embeddings"):
        make_plan(kmeans, kmeans.load(), data, normaliser="interpolated")


def test_a_tsne_trained_with_it_separates_blobs() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    x = (rng.normal(0, 6, (4, 10))[y] + rng.normal(0, 1, (300, 10))).astype(np.float32)
    common: dict[str, object] = {"data": (x, y), "epochs": 150, "out": False, "progress": False}
    result = train(SPECS / "tsne.icon", normaliser="interpolated", **common)  # type: ignore[arg-type]
    reference = train(SPECS / "tsne.icon", normaliser="exact", **common)  # type: ignore[arg-type]
    assert result.model is not None and result.model.plan.normaliser == "interpolated"
    assert result.metrics["knn_accuracy"] > 0.99
    assert result.metrics["trustworthiness"] == pytest.approx(
        reference.metrics["trustworthiness"], abs=0.01
    )
    assert result.losses[-1] == pytest.approx(reference.losses[-1], rel=0.02)
