"""Issue-3 methods against independent references (float64, seeded batches).

Tolerance: 1e-10 absolute on the loss and on the gradient w.r.t. z, unless stated. References are
written here from the papers' formulas or taken from scikit-learn / torch, never from icon-dsl.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import references as R
import torch
import torch.nn.functional as F
from conftest import close
from conftest import load_generated as load

TOL = 1e-10


def value_and_grad(fn, z):  # type: ignore[no-untyped-def]
    z = z.detach().clone().requires_grad_(True)
    loss = fn(z)
    (grad,) = torch.autograd.grad(loss, z)
    return loss.detach(), grad


@pytest.mark.parametrize("stem", ["clip", "cmc"])
def test_clip_equals_symmetric_clip_loss(stem: str) -> None:
    g = torch.Generator().manual_seed(1)
    b, d, tau = 6, 5, 0.07
    z = torch.randn(2 * b, d, dtype=torch.float64, generator=g)
    index = torch.arange(b).repeat(2)
    modality = torch.tensor([0] * b + [1] * b)
    module = load(stem)(temperature=tau)
    got = value_and_grad(lambda z: module(z, index=index, modality=modality), z)
    ref = value_and_grad(lambda z: R.clip_symmetric(z[:b], z[b:], tau), z)
    close(got[0], ref[0])
    close(got[1], ref[1])


def test_tsne_joint_equals_sklearn_exact_kl() -> None:
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(60, 5)))
    y = torch.tensor(rng.normal(size=(60, 2)))
    module = load("tsne_joint")()
    got = value_and_grad(lambda y: module.divergence(y, x=x), y)
    ref = value_and_grad(lambda y: R.tsne_joint_kl(x, y, 30.0), y)
    # the two perplexity searches stop at different tolerances: P agrees to ~1e-7
    close(got[0], ref[0], 1e-6)
    close(got[1], ref[1], 1e-6)
    # forward is the cross-entropy: the same gradient as the KL
    ce_grad = value_and_grad(lambda y: module(y, x=x), y)[1]
    close(ce_grad, got[1], 1e-12)


def _rowwise_ce(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return -(torch.where(p > 0, p * log_q, 0.0)).sum(1).mean()


def test_tsimclr_and_debiased_tsimclr_formula() -> None:
    g = torch.Generator().manual_seed(2)
    n = 8
    z = torch.randn(n, 2, dtype=torch.float64, generator=g)
    index = torch.arange(n // 2).repeat(2)
    eye = torch.eye(n, dtype=torch.bool)

    def reference(z: torch.Tensor, alpha: float) -> torch.Tensor:
        w = 1 / (1 + torch.cdist(z, z) ** 2)  # Student-t, dof = 1
        q = w.masked_fill(eye, 0) / w.masked_fill(eye, 0).sum(1, keepdim=True)
        p = ((index[:, None] == index[None, :]) & ~eye).double()
        p = (1 - alpha) * p / p.sum(1, keepdim=True) + alpha * (~eye).double() / (n - 1)
        return _rowwise_ce(p, torch.log(q.masked_fill(eye, 1.0)))

    got = value_and_grad(lambda z: load("tsimclr")()(z, index=index), z)
    ref = value_and_grad(lambda z: reference(z, 0.0), z)
    close(got[0], ref[0])
    close(got[1], ref[1])
    got = value_and_grad(lambda z: load("debiased_tsimclr")(alpha=0.6)(z, index=index), z)
    ref = value_and_grad(lambda z: reference(z, 0.6), z)
    close(got[0], ref[0])
    close(got[1], ref[1])


def test_harmonic_and_mlm() -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(12, 4, dtype=torch.float64, generator=g)
    y = torch.randint(0, 10, (12,), generator=g)
    w = torch.randn(10, 4, dtype=torch.float64, generator=g)
    harmonic = load("harmonic")(embedding_dim=4)
    harmonic.prototypes.data = w.clone()
    logits = -torch.log1p(torch.cdist(z, w) ** 2)  # Student-t dof 1 over prototypes
    close(harmonic(z, y=y), F.cross_entropy(logits, y))
    mlm = load("mlm")(vocab=10, embedding_dim=4)
    mlm.prototypes.data = w.clone()
    close(mlm(z, y=y), F.cross_entropy(z @ w.T, y))


def test_xsample_soft_targets() -> None:
    g = torch.Generator().manual_seed(4)
    n = 10
    z = torch.randn(n, 4, dtype=torch.float64, generator=g)
    side = torch.randn(n, 6, dtype=torch.float64, generator=g)
    eye = torch.eye(n, dtype=torch.bool)

    def softmax_cos(v: torch.Tensor, tau: float) -> torch.Tensor:
        v = v / v.norm(dim=1, keepdim=True)
        return torch.softmax((v @ v.T / tau).masked_fill(eye, -math.inf), 1)

    p = softmax_cos(side, 0.1)
    got = value_and_grad(lambda z: load("xsample")()(z, side=side), z)
    ref = value_and_grad(
        lambda z: _rowwise_ce(p, torch.log(softmax_cos(z, 0.5).masked_fill(eye, 1.0))), z
    )
    close(got[0], ref[0])
    close(got[1], ref[1])


def test_dcd_cluster_kernel_against_knn() -> None:
    g = torch.Generator().manual_seed(5)
    n = 14
    x = torch.randn(n, 3, dtype=torch.float64, generator=g)
    phi = torch.softmax(torch.randn(n, 10, dtype=torch.float64, generator=g), 1)
    d2 = torch.cdist(x, x) ** 2
    d2.fill_diagonal_(math.inf)
    nearest = d2.argsort(1)[:, :10]
    p = torch.zeros(n, n, dtype=torch.float64).scatter(1, nearest, 0.1)
    q = R.cluster_kernel(phi)
    close(load("dcd")()(phi, x=x), -(p * torch.log(q)).sum(1).mean())


def test_limits_are_trends_not_equalities() -> None:
    """Triplet (sigma -> 0): q concentrates on the nearest item; VICReg/PCA (sigma -> inf): q flat."""
    g = torch.Generator().manual_seed(6)
    z = torch.randn(8, 3, dtype=torch.float64, generator=g)
    index = torch.arange(4).repeat(2)
    _, q_small = load("triplet")().distributions(z, index=index)
    zn = z / z.norm(dim=1, keepdim=True)  # both limits are on the unit sphere (cosine)
    d2 = torch.cdist(zn, zn).fill_diagonal_(math.inf)
    assert torch.equal(q_small.argmax(1), d2.argmin(1))
    # where the nearest item is clearly nearest (its d2 gap to the second beats 2 sigma^2 log 700,
    # so the other 7 weights sum below 1/100 of its own), q puts more than 0.99 on it
    two = d2.topk(2, dim=1, largest=False).values
    clear = (two[:, 1] - two[:, 0]) > 2 * 0.05**2 * math.log(700)
    assert bool(clear.any())
    assert float(q_small.max(1).values[clear].min()) > 0.99
    _, q_large = load("vicreg")().distributions(z, index=index)
    off = q_large[~torch.eye(8, dtype=torch.bool)]
    assert float(off.max() - off.min()) < 1e-3


def test_lgsimclr_knn_on_guidance_features() -> None:
    g = torch.Generator().manual_seed(9)
    n = 12
    z = torch.randn(n, 4, dtype=torch.float64, generator=g)
    side = torch.randn(n, 6, dtype=torch.float64, generator=g)
    eye = torch.eye(n, dtype=torch.bool)
    s = side / side.norm(dim=1, keepdim=True)
    cos = (s @ s.T).masked_fill(eye, -math.inf)
    nearest = cos.topk(5, dim=1).indices  # cosine neighbours = smallest 2 - 2 cos
    p = torch.zeros(n, n, dtype=torch.float64).scatter(1, nearest, 0.2)
    zn = z / z.norm(dim=1, keepdim=True)
    log_q = torch.log_softmax((zn @ zn.T / 0.5).masked_fill(eye, -math.inf), 1)
    close(load("lgsimclr")()(z, side=side), _rowwise_ce(p, log_q.masked_fill(eye, 0.0)))


def test_spectral_is_kmeans_identity_on_the_side_embedding() -> None:
    g = torch.Generator().manual_seed(10)
    n, sigma = 15, 1.3
    side = torch.randn(n, 3, dtype=torch.float64, generator=g)
    phi = torch.softmax(torch.randn(n, 10, dtype=torch.float64, generator=g), 1)
    lhs, rhs = R.soft_kmeans_reverse_kl(side, phi, sigma)
    got = load("spectral")(sigma=sigma)(phi, side=side)
    close(got * n, lhs, 1e-9)
    close(got * n, rhs, 1e-9)


def test_normalized_cuts_random_walk_graph() -> None:
    g = torch.Generator().manual_seed(11)
    a = (torch.rand(30, 30, generator=g) > 0.6).double()
    a = a + a.T
    index = torch.randperm(30, generator=g)[:12]
    phi = torch.softmax(torch.randn(12, 10, dtype=torch.float64, generator=g), 1)
    w = a[index][:, index].fill_diagonal_(0)
    keep = w.sum(1) > 0
    p = w / w.sum(1, keepdim=True).clamp_min(1e-300)
    q = R.cluster_kernel(phi)
    expected = -(torch.where(p > 0, p * torch.log(q), 0.0)).sum(1)[keep].mean()
    module = load("normalized_cuts")(adjacency=a)
    close(module(phi, index=index), expected)
    assert module.last_dropped_rows == int((~keep).sum())


def test_debiased_infonce_clustering_formula() -> None:
    g = torch.Generator().manual_seed(12)
    n, alpha = 16, 0.2
    x = torch.randn(n, 3, dtype=torch.float64, generator=g)
    index = torch.arange(n // 2).repeat(2)
    phi = torch.softmax(torch.randn(n, 10, dtype=torch.float64, generator=g), 1)
    eye = torch.eye(n, dtype=torch.bool)
    d2 = (torch.cdist(x, x) ** 2).masked_fill(eye, math.inf)
    knn = torch.zeros(n, n, dtype=torch.float64).scatter(1, d2.topk(10, largest=False).indices, 1.0)
    knn_p = knn / 10
    walk = knn_p + knn_p @ knn_p
    walk = walk.masked_fill(eye, 0)
    views = (index[:, None] == index[None, :]) & ~eye
    union = (views | (knn > 0) | (walk > 0)).double()
    p = R.debias(union / union.sum(1, keepdim=True), alpha)
    q = (1 - alpha) * R.cluster_kernel(phi) + alpha / n
    expected = -(p * torch.log(q)).sum(1).mean()
    close(load("debiased_infonce_clustering")(alpha=alpha)(phi, x=x, index=index), expected)


def test_pca_limit_matches_the_variance_expansion() -> None:
    """sigma -> inf: loss = log N - tr(Cov(f(x))) / sigma^2 + O(1 / sigma^4): PCA's objective."""
    g = torch.Generator().manual_seed(13)
    n = 20
    z = torch.randn(n, 2, dtype=torch.float64, generator=g)
    loss = load("pca")()(z)  # sigma = 100
    variance = ((z - z.mean(0)) ** 2).sum(1).mean()
    expansion = math.log(n) - variance / 100**2
    assert abs(float(loss) - float(expansion)) < 1e-6
    assert abs(float(loss) - math.log(n)) > 1e-5  # the variance term is what is learned


def test_vicreg_limit_matches_the_attraction_expansion() -> None:
    """sigma -> inf: loss = log(N - 1) + (d2_partner - mean_j d2_ij) / (2 sigma^2) + O(sigma^-4),
    with cosine d2 (on the unit sphere the width is not absorbed by a rescaling of f(x))."""
    g = torch.Generator().manual_seed(14)
    n = 12
    z = torch.randn(n, 3, dtype=torch.float64, generator=g)
    index = torch.arange(n // 2).repeat(2)
    zn = z / z.norm(dim=1, keepdim=True)
    d2 = torch.cdist(zn, zn) ** 2
    partner = (torch.arange(n) + n // 2) % n
    mean_other = d2.sum(1) / (n - 1)
    expansion = math.log(n - 1) + ((d2[torch.arange(n), partner] - mean_other) / 2e4).mean()
    assert abs(float(load("vicreg")()(z, index=index)) - float(expansion)) < 1e-7


def test_triplet_limit_is_bounded_by_the_hinge() -> None:
    """sigma -> 0: the loss tends to max(0, d2_pos - min_neg d2) / (2 sigma^2) per anchor (cosine
    d2)."""
    g = torch.Generator().manual_seed(15)
    n = 10
    z = torch.randn(n, 3, dtype=torch.float64, generator=g)
    index = torch.arange(n // 2).repeat(2)
    eye = torch.eye(n, dtype=torch.bool)
    zn = z / z.norm(dim=1, keepdim=True)
    d2 = torch.cdist(zn, zn) ** 2
    partner = (torch.arange(n) + n // 2) % n
    d_pos = d2[torch.arange(n), partner]
    d_neg = d2.masked_fill(eye | (index[:, None] == index[None, :]), math.inf).min(1).values
    hinge = (torch.clamp(d_pos - d_neg, min=0) / (2 * 0.05**2)).mean()
    loss = load("triplet")()(z, index=index)
    # log(N - 1) bounds the soft-max's slack above the hinge
    assert float(hinge) <= float(loss) <= float(hinge) + math.log(n - 1) + 1e-9
