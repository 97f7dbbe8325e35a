"""The COMMITTED generated modules (generated/<stem>.py) against independent references.

Each module is loaded by file path (not through icon_dsl), run in float64 on seeded random
batches, and its forward loss AND its gradient w.r.t. z (torch.autograd.grad) are compared with
``tests/references.py``, pytorch-metric-learning, torch's own cross-entropy, scikit-learn's
KMeans or a hand formula written out here.

Tolerances (absolute, on O(1) losses and gradients):
- TOL = 1e-10 wherever both sides compute the same closed form (NT-Xent, SupCon,
  cross-entropy, the fixed-sigma Gaussian / Student-t of ``card``, k-means' reverse KL).
- Perplexity (SNE, t-SNE): the generated module and the reference find sigma_i by different
  bisections (generated: 64 steps on log beta in [-50, 50]; reference: bisection on beta until
  |H - log perplexity| < 1e-13), so they stop at slightly different betas. Measured: P differs by
  ~2e-14, the KL by ~1e-14, the gradient by ~1e-14. End-to-end comparisons use PERP_TOL = 1e-9:
  five orders of margin for the two stopping rules (and platform BLAS), while any real formula
  error (a wrong sigma, a missing factor 2, the diagonal in the support) is O(1e-2) or more.
  Everything AFTER the search is also checked at TOL: the module's P hits the target perplexity
  (row entropy = log(perplexity) within 1e-10) and is a per-row Gaussian in x, and loss /
  divergence / gradient computed from the module's own P with reference formulas match at TOL.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import references as R
import torch
import torch.nn.functional as F
from conftest import GENERATED, load_generated

F64 = torch.float64
TOL = 1e-10
PERP_TOL = 1e-9


# ----------------------------------------------------------------------------- helpers


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=F64)


def leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_()


def grad(loss: torch.Tensor, *wrt: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(loss, wrt)


def assert_num(a: torch.Tensor | float, b: torch.Tensor | float, tol: float, what: str) -> None:
    a = float(a.detach()) if isinstance(a, torch.Tensor) else float(a)
    b = float(b.detach()) if isinstance(b, torch.Tensor) else float(b)
    assert math.isfinite(a) and math.isfinite(b), f"{what}: {a} vs {b}"
    assert abs(a - b) <= tol, f"{what}: {a!r} vs {b!r} (diff {abs(a - b):.3g} > {tol})"


def assert_grad(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    torch.testing.assert_close(a, b, atol=tol, rtol=0)


def shuffled_views(b: int, seed: int) -> torch.Tensor:
    """2B index values, the two views of each sample at random, non-adjacent positions."""
    return torch.arange(b).repeat(2)[torch.randperm(2 * b, generator=gen(seed))]


# ----------------------------------------------------------------------------- SimCLR


SIMCLR_CASES = [
    # (seed, samples B, dim, temperature, layout of the two views)
    (0, 8, 5, 0.5, "adjacent"),
    (1, 8, 5, 0.5, "halves"),
    (2, 16, 8, 0.1, "shuffled"),
    (3, 3, 2, 1.0, "shuffled"),
    (4, 12, 16, 0.07, "shuffled"),
]


def _views(b: int, layout: str, seed: int) -> torch.Tensor:
    if layout == "adjacent":  # 0 0 1 1 2 2 ...
        return torch.arange(b).repeat_interleave(2)
    if layout == "halves":  # 0 1 2 ... 0 1 2 ... (SimCLR's usual layout)
        return torch.arange(b).repeat(2)
    return shuffled_views(b, seed)


@pytest.mark.parametrize("seed,b,d,tau,layout", SIMCLR_CASES)
def test_simclr_equals_nt_xent_value_and_grad(seed, b, d, tau, layout):
    SimCLR = load_generated("simclr")
    index = _views(b, layout, seed)
    z = randn(2 * b, d, seed=seed)
    z1, z2 = leaf(z), leaf(z)
    module = SimCLR(temperature=tau)
    ours = module(z1, index=index)
    ref = R.nt_xent(z2, index, tau)
    assert_num(ours, ref, TOL, "SimCLR vs references.nt_xent")
    assert module.last_dropped_rows == 0
    assert_grad(grad(ours, z1)[0], grad(ref, z2)[0], TOL)


@pytest.mark.parametrize("seed,b,d,tau,layout", SIMCLR_CASES)
def test_simclr_equals_pml_ntxent_value_and_grad(seed, b, d, tau, layout):
    from pytorch_metric_learning.losses import NTXentLoss

    SimCLR = load_generated("simclr")
    index = _views(b, layout, seed)
    z = randn(2 * b, d, seed=seed + 100)
    z1, z2 = leaf(z), leaf(z)
    ours = SimCLR(temperature=tau)(z1, index=index)
    theirs = NTXentLoss(temperature=tau)(z2, index)  # labels = sample index
    assert_num(ours, theirs, TOL, "SimCLR vs pml NTXentLoss")
    assert_grad(grad(ours, z1)[0], grad(theirs, z2)[0], TOL)


def test_simclr_default_temperature_is_the_spec_default():
    SimCLR = load_generated("simclr")
    index = shuffled_views(6, 9)
    z = randn(12, 4, seed=9)
    assert_num(SimCLR()(z, index=index), R.nt_xent(z, index, 0.1), TOL, "default tau 0.1")


# ----------------------------------------------------------------------------- SupCon


SUPCON_LABELS = [
    torch.tensor([0, 1, 2, 0, 1, 2, 2, 3, 3, 0, 1, 3]),  # every class has >= 2 members
    torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 1, 0]),  # unequal class sizes
]


@pytest.mark.parametrize("case", range(len(SUPCON_LABELS)))
@pytest.mark.parametrize("seed,tau", [(0, 0.1), (1, 0.5), (2, 1.0)])
def test_supcon_equals_references_and_pml(case, seed, tau):
    from pytorch_metric_learning.losses import SupConLoss

    SupCon = load_generated("supcon")
    y = SUPCON_LABELS[case]
    z = randn(len(y), 6, seed=seed)
    z1, z2, z3 = leaf(z), leaf(z), leaf(z)
    module = SupCon(temperature=tau)
    ours = module(z1, y=y)
    ref = R.supcon_out(z2, y, tau)
    theirs = SupConLoss(temperature=tau)(z3, y)
    assert module.last_dropped_rows == 0
    assert_num(ours, ref, TOL, "SupCon vs references.supcon_out")
    assert_num(ours, theirs, TOL, "SupCon vs pml SupConLoss")
    g_ours = grad(ours, z1)[0]
    assert_grad(g_ours, grad(ref, z2)[0], TOL)
    assert_grad(g_ours, grad(theirs, z3)[0], TOL)


@pytest.mark.parametrize("seed", [3, 4])
def test_supcon_singleton_classes_are_dropped_and_counted(seed):
    """Classes 3 and 4 appear once: those two anchors have an empty p row (j != i)."""
    from pytorch_metric_learning.losses import SupConLoss

    SupCon = load_generated("supcon")
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 0, 4, 1, 2])
    z = randn(len(y), 5, seed=seed)
    z1, z2, z3 = leaf(z), leaf(z), leaf(z)
    module = SupCon(temperature=0.2)
    ours = module(z1, y=y)
    ref, dropped = R.supcon_out_with_count(z2, y, 0.2)
    theirs = SupConLoss(temperature=0.2)(z3, y)
    assert dropped == 2
    assert module.last_dropped_rows == 2
    assert_num(ours, ref, TOL, "SupCon with singletons vs reference")
    assert_num(ours, theirs, TOL, "SupCon with singletons vs pml")
    g = grad(ours, z1)[0]
    assert_grad(g, grad(ref, z2)[0], TOL)
    assert_grad(g, grad(theirs, z3)[0], TOL)
    # the divergence is averaged over the same kept anchors; it differs from the cross-entropy by
    # the mean H(p) = mean log(number of positives) over the kept anchors
    same = (y[:, None] == y[None, :]) & ~torch.eye(len(y), dtype=torch.bool)
    n_pos = same.sum(1)
    h_p = torch.log(n_pos[n_pos > 0].to(F64)).mean()
    assert_num(module.divergence(z, y=y), float(ref.detach()) - float(h_p), TOL, "SupCon KL")
    assert module.last_dropped_rows == 2


def test_supcon_every_label_unique_raises_clear_error():
    SupCon = load_generated("supcon")
    z = randn(6, 4, seed=5)
    y = torch.arange(6)
    with pytest.raises(ValueError, match=r"(?i)no anchor.*non-empty row"):
        SupCon(temperature=0.1)(z, y=y)


# ----------------------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("seed,n", [(0, 16), (1, 7), (2, 64)])
def test_cross_entropy_equals_torch_cross_entropy_value_and_grads(seed, n):
    CrossEntropy = load_generated("cross_entropy")
    module = CrossEntropy().double()
    n_classes, dim = module.prototypes.shape
    assert (n_classes, dim) == (10, 32)  # the spec's classes(y, 10) and mlp(dim=32)
    W = randn(n_classes, dim, seed=seed + 50)
    module.prototypes.data = W.clone()
    y = torch.randint(0, n_classes, (n,), generator=gen(seed))
    z = randn(n, dim, seed=seed)
    z1, z2, w2 = leaf(z), leaf(z), leaf(W)
    ours = module(z1, y=y)
    ref = F.cross_entropy(z2 @ w2.T, y)
    assert_num(ours, ref, TOL, "CrossEntropy vs F.cross_entropy")
    assert_num(ours, R.cross_entropy_prototypes_manual(z, W, y), TOL, "vs manual log-sum-exp")
    gz, gw = grad(ours, z1, module.prototypes)
    rz, rw = grad(ref, z2, w2)
    assert_grad(gz, rz, TOL)
    assert_grad(gw, rw, TOL)
    # one-hot p: KL and cross-entropy are the same number
    assert_num(module.divergence(z, y=y), ref, TOL, "CrossEntropy divergence (one-hot p)")


def test_cross_entropy_large_logits_stay_finite_and_exact():
    CrossEntropy = load_generated("cross_entropy")
    module = CrossEntropy().double()
    W = randn(10, 32, seed=8) * 30
    module.prototypes.data = W.clone()
    y = torch.arange(10)
    z = randn(10, 32, seed=9) * 30
    ours = module(z, y=y)
    assert_num(ours, F.cross_entropy(z @ W.T, y), 1e-8, "large logits")


# ----------------------------------------------------------------------------- SNE / t-SNE


def _sne_log_q(z: torch.Tensor) -> torch.Tensor:
    """Reference q of specs/sne.icon: softmax_{j != i}(-|z_i - z_j|^2) (sigma^2 = 1/2)."""
    eye = torch.eye(len(z), dtype=torch.bool)
    return torch.log_softmax((-R.sqdist(z)).masked_fill(eye, -math.inf), dim=1)


def _tsne_log_q(z: torch.Tensor) -> torch.Tensor:
    """Reference q of specs/tsne.icon: row-normalised (1 + |z_i - z_j|^2)^-1 over j != i."""
    eye = torch.eye(len(z), dtype=torch.bool)
    return torch.log_softmax((-torch.log1p(R.sqdist(z))).masked_fill(eye, -math.inf), dim=1)


SNE_FORMS = {
    "sne": (R.conditional_sne, _sne_log_q),
    "tsne": (R.conditional_tsne, _tsne_log_q),
}


def _ce_and_kl(p: torch.Tensor, log_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over rows of H(p, q) and KL(p || q); p has a zero diagonal, log_q a -inf one."""
    off = ~torch.eye(len(p), dtype=torch.bool)
    ce = -(p * log_q.masked_fill(~off, 0.0)).sum(1).mean()
    kl = (torch.special.xlogy(p, p).sum(1)).mean() + ce
    return ce, kl


@pytest.mark.parametrize("stem", ["sne", "tsne"])
@pytest.mark.parametrize("seed,n,d", [(0, 40, 5), (1, 33, 10)])
def test_sne_tsne_end_to_end_against_reference(stem, seed, n, d):
    """divergence == the reference KL; forward == the reference cross-entropy (= KL + mean H(p))
    with the reference P; gradients of forward and of the reference KL agree (H(p) is constant).
    Tolerance PERP_TOL because the two perplexity searches stop at slightly different sigmas."""
    Module = load_generated(stem)
    ref_kl_fn, ref_log_q = SNE_FORMS[stem]
    x = randn(n, d, seed=seed)
    z = randn(n, 2, seed=seed + 10)
    z1, z2 = leaf(z), leaf(z)
    module = Module()
    loss = module(z1, x=x)
    kl = module.divergence(z, x=x)
    ref_kl = ref_kl_fn(x, z2, 30)
    p_ref = R.perplexity_conditional_p(x, 30)
    ref_ce, ref_kl2 = _ce_and_kl(p_ref, ref_log_q(z))
    assert_num(ref_kl2, ref_kl, 1e-12, "the test's KL formula vs the reference's")
    assert_num(kl, ref_kl, PERP_TOL, f"{stem} divergence vs reference KL")
    assert_num(loss, ref_ce, PERP_TOL, f"{stem} forward vs cross-entropy from reference P")
    h_p = -torch.special.xlogy(p_ref, p_ref).sum(1).mean()
    assert_num(loss, ref_kl + h_p, PERP_TOL, f"{stem} forward vs KL + mean H(p)")
    assert module.last_dropped_rows == 0
    assert_grad(grad(loss, z1)[0], grad(ref_kl, z2)[0], PERP_TOL)


@pytest.mark.parametrize("stem", ["sne", "tsne"])
@pytest.mark.parametrize("seed,n", [(3, 40), (4, 36)])
def test_sne_tsne_exact_given_the_modules_own_p(stem, seed, n):
    """Everything after the perplexity search, at TOL: the module's P hits perplexity 30 and is a
    Gaussian in x (row-wise softmax of -beta_i d2), and forward / divergence / gradient computed
    from that P with the reference q formula match."""
    Module = load_generated(stem)
    _, ref_log_q = SNE_FORMS[stem]
    x = randn(n, 4, seed=seed)
    z = randn(n, 2, seed=seed + 10)
    module = Module()
    p, q = module.distributions(z, x=x)
    p = p.detach()
    eye = torch.eye(n, dtype=torch.bool)
    assert (p[eye] == 0).all()
    torch.testing.assert_close(p.sum(1), torch.ones(n, dtype=F64), atol=1e-12, rtol=0)
    entropy = -torch.special.xlogy(p, p).sum(1)
    torch.testing.assert_close(entropy, torch.full_like(entropy, math.log(30)), atol=1e-10, rtol=0)
    # P is a Gaussian in x: log p_ij = -beta_i d2_ij - log Z_i, one beta_i per row (least squares)
    d2 = R.sqdist(x)[~eye].reshape(n, n - 1)
    logp = torch.log(p[~eye].reshape(n, n - 1))
    dc = d2 - d2.mean(1, keepdim=True)
    beta = -(dc * (logp - logp.mean(1, keepdim=True))).sum(1) / (dc * dc).sum(1)
    residual = logp + beta[:, None] * d2
    assert (beta > 0).all()
    assert float((residual - residual.mean(1, keepdim=True)).abs().max()) <= 1e-9
    log_q = ref_log_q(z).masked_fill(eye, 0.0)
    torch.testing.assert_close(torch.log(q.masked_fill(eye, 1.0)), log_q, atol=TOL, rtol=0)
    z1, z2 = leaf(z), leaf(z)
    ce, kl = _ce_and_kl(p, ref_log_q(z2))
    loss = module(z1, x=x)
    assert_num(loss, ce, TOL, f"{stem} forward vs cross-entropy from its own P")
    assert_num(module.divergence(z, x=x), kl, TOL, f"{stem} divergence vs KL from its own P")
    assert_grad(grad(loss, z1)[0], grad(ce, z2)[0], TOL)


def test_sne_perplexity_search_agrees_with_reference_search():
    """The two binary searches land on the same P to 1e-10 (they differ only in where they stop)."""
    SNE = load_generated("sne")
    x = randn(40, 6, seed=21)
    p, _ = SNE().distributions(randn(40, 2, seed=22), x=x)
    torch.testing.assert_close(p, R.perplexity_conditional_p(x, 30), atol=1e-10, rtol=0)


# ----------------------------------------------------------------------------- card


def _card_reference(x: torch.Tensor, z: torch.Tensor, sigma: float):
    """specs/card.icon by hand: p = softmax_{j != i}(-|x_i - x_j|^2 / (2 sigma^2)),
    q = (1 + |z_i - z_j|^2)^-1 normalised over j != i (Student-t, dof 1, scale 1).
    Returns (mean cross-entropy, mean KL), explicit loops over rows."""
    n = len(x)
    ce_rows, kl_rows = [], []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        wp = torch.stack([torch.exp(-((x[i] - x[j]) ** 2).sum() / (2 * sigma**2)) for j in others])
        wq = torch.stack([1.0 / (1.0 + ((z[i] - z[j]) ** 2).sum()) for j in others])
        p, q = wp / wp.sum(), wq / wq.sum()
        ce_rows.append(-(p * torch.log(q)).sum())
        kl_rows.append((p * (torch.log(p) - torch.log(q))).sum())
    return torch.stack(ce_rows).mean(), torch.stack(kl_rows).mean()


@pytest.mark.parametrize("seed,n,sigma", [(0, 12, 1.0), (1, 9, 0.7), (2, 15, 2.5)])
def test_card_equals_hand_formula(seed, n, sigma):
    Card = load_generated("card")
    x = randn(n, 3, seed=seed)
    z = randn(n, 2, seed=seed + 1)
    z1, z2 = leaf(z), leaf(z)
    module = Card(sigma=sigma)
    loss = module(z1, x=x)
    ce, kl = _card_reference(x, z2, sigma)
    assert_num(loss, ce, TOL, "Card forward vs hand cross-entropy")
    assert_num(module.divergence(z, x=x), kl, TOL, "Card divergence vs hand KL")
    assert_grad(grad(loss, z1)[0], grad(ce, z2)[0], TOL)


def test_card_sigma_is_required():
    Card = load_generated("card")
    with pytest.raises(TypeError, match="sigma"):
        Card()


# ----------------------------------------------------------------------------- k-means


def test_kmeans_docstring_says_mean_over_anchors():
    text = (GENERATED / "kmeans.py").read_text(encoding="utf-8")
    assert "L = (1/N) sum_i" in text  # hence loss * N == the reference's sum over anchors


@pytest.mark.parametrize("seed,n,k,sigma", [(0, 20, 3, 1.0), (1, 30, 5, 0.8), (2, 12, 10, 2.0)])
def test_kmeans_reverse_kl_identity(seed, n, k, sigma):
    """loss * N == sum_i KL(q_i || p_i) (reference lhs) == the soft k-means identity (rhs)."""
    KMeans = load_generated("kmeans")
    x = randn(n, 4, seed=seed)
    phi = torch.softmax(randn(n, k, seed=seed + 1) * 2, dim=1)
    z1, z2 = leaf(phi), leaf(phi)
    module = KMeans(sigma=sigma)
    loss = module(z1, x=x)
    lhs, rhs = R.soft_kmeans_reverse_kl(x, z2, sigma)
    assert_num(loss * n, lhs, TOL * n, "KMeans loss * N vs reference lhs")
    assert_num(loss * n, rhs, TOL * n, "KMeans loss * N vs identity rhs")
    assert_num(module.divergence(phi, x=x), loss, 0.0, "forward is the divergence itself")
    assert_grad(grad(loss * n, z1)[0], grad(lhs, z2)[0], TOL * n)


@pytest.mark.parametrize("seed,k", [(0, 3), (1, 4)])
def test_kmeans_hard_assignments_cost_term_equals_sklearn_inertia(seed, k):
    """One-hot phi from sklearn's KMeans: sigma^2 * (N loss + sum_i H(q_i) - sum_i log Z_i) is the
    soft k-means cost, which for hard assignments is sklearn's inertia_ (relative 1e-10: sklearn
    accumulates the inertia in its own order)."""
    from sklearn.cluster import KMeans as SkKMeans

    KMeans = load_generated("kmeans")
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, 2))
    x_np = np.concatenate([c + rng.normal(size=(10, 2)) for c in centers])
    km = SkKMeans(n_clusters=k, n_init=3, tol=0.0, random_state=seed, algorithm="lloyd").fit(x_np)
    labels = torch.as_tensor(km.labels_, dtype=torch.long)
    assert len(labels.unique()) == k
    x = torch.as_tensor(x_np, dtype=F64)
    n, sigma = len(x), 1.5
    phi = F.one_hot(labels, k).to(F64)
    loss = KMeans(sigma=sigma)(phi, x=x)
    sizes = phi.sum(0)
    entropy_q = torch.log(sizes[labels]).sum()  # q_i is uniform over i's cluster
    log_z = torch.logsumexp(-R.sqdist(x) / (2 * sigma**2), dim=1).sum()
    cost = sigma**2 * (n * loss + entropy_q - log_z)
    assert abs(float(cost) - km.inertia_) <= 1e-10 * km.inertia_
    assert_num(cost, R.kmeans_inertia_hard(x, labels), 1e-9, "cost vs reference inertia")
    assert_num(cost, R.soft_kmeans_cost(x, phi), 1e-9, "cost vs soft k-means cost")
