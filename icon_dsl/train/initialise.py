"""Where training starts: PCA for table mappers, k-means++ seeds for clustering heads."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

TABLE_INIT_STD = 1e-4
#: The k-means++ start of a clustering head is a softmax over squared distances to the seeds at
#: a temperature of (mean squared distance to the nearest seed) / 4. Softer starts (1) average
#: NMI 0.715 over 12 seeds of kmeans.icon on digits, this one 0.736 (scikit-learn KMeans with one
#: start: 0.736); sharper (10) gave 0.729 (docs/training.md).
CENTROID_INIT_SHARPNESS = 4.0


def pca_init(mapper: nn.Module, x: np.ndarray, n: int, dim: int, seed: int) -> None:
    """Set a table mapper's (n, dim) weight to the data's leading principal components, scaled
    so the first has standard deviation TABLE_INIT_STD (as scikit-learn's TSNE init="pca")."""
    weights = [p for p in mapper.parameters() if tuple(p.shape) == (n, dim)]
    if len(weights) != 1:
        return
    centred = np.asarray(x, dtype=np.float64) - x.mean(axis=0, dtype=np.float64)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:dim]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    coords = centred @ (vt * signs[:, None]).T
    if coords.shape[1] < dim:
        rng = np.random.default_rng(seed)
        extra = rng.standard_normal((n, dim - coords.shape[1])) * 1e-3
        coords = np.concatenate([coords, extra * (coords.std() or 1.0)], axis=1)
    scale = coords[:, 0].std() or 1.0
    init = torch.as_tensor(coords / scale * TABLE_INIT_STD, dtype=weights[0].dtype)
    with torch.no_grad():
        weights[0].copy_(init.to(weights[0].device))


def centroid_init(mapper: nn.Module, x: np.ndarray, k: int, seed: int) -> None:
    """Start a linear softmax (cluster) head at k seeds chosen by scikit-learn's greedy
    k-means++ (``kmeans_plusplus``, the seeding of its KMeans), with ``seed``.

    softmax(W x + b) with W = 2 mu / s, b = -|mu|^2 / s equals softmax(-|x - mu|^2 / s), soft
    assignments to the seeds mu. s is the mean squared distance of the points to their nearest
    seed divided by CENTROID_INIT_SHARPNESS. Only a mapper whose sole linear layer maps the
    features to the k clusters is touched; the loss then moves the seeds and the assignments.
    """
    from sklearn.cluster import kmeans_plusplus
    from sklearn.metrics.pairwise import euclidean_distances

    linears = [m for m in mapper.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 1 or linears[0].out_features != k or linears[0].bias is None:
        return
    if linears[0].in_features != x.shape[1]:
        return  # a layer over something else than the features (a mapper of the user's)
    layer = linears[0]
    points = np.asarray(x, dtype=np.float64)
    if len(points) < k:
        return  # fewer points than clusters: keep the default initialisation
    centres, _ = kmeans_plusplus(points, k, random_state=seed % 2**32)
    nearest = euclidean_distances(points, centres, squared=True).min(axis=1)
    scale = float(nearest.mean()) / CENTROID_INIT_SHARPNESS or 1.0
    weight = torch.as_tensor(2 * centres / scale, dtype=layer.weight.dtype)
    bias = torch.as_tensor(-(centres**2).sum(axis=1) / scale, dtype=layer.bias.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight.to(layer.weight.device))
        layer.bias.copy_(bias.to(layer.bias.device))
