"""Each reference in ``references.py`` checked against an outside implementation or by hand.

Outside implementations: pytorch-metric-learning (NT-Xent, SupCon), scikit-learn (log_loss,
KMeans, t-SNE's perplexity search and exact KL + gradient), scipy (KL / entropy). All in float64
with seeded generators; tolerances are stated at each assertion.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import references as R
import torch
import torch.nn.functional as F

F64 = torch.float64


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def num(a):
    return float(a.detach()) if isinstance(a, torch.Tensor) else float(a)


def scalars_close(a, b, tol):
    """|a - b| <= tol for two scalars (numbers or one-element tensors)."""
    return abs(num(a) - num(b)) <= tol


# ----------------------------------------------------------------------------- NT-Xent


def _shuffled_index(b, seed):
    """2B index values, each sample's two views at random (non-adjacent) positions."""
    g = torch.Generator().manual_seed(seed)
    return torch.arange(b).repeat(2)[torch.randperm(2 * b, generator=g)]


@pytest.mark.parametrize("seed,b,d,tau", [(0, 6, 5, 0.5), (1, 16, 8, 0.1), (2, 3, 2, 1.0)])
def test_nt_xent_matches_pml_value_and_grad(seed, b, d, tau):
    from pytorch_metric_learning.losses import NTXentLoss

    index = _shuffled_index(b, seed)
    z1 = randn(2 * b, d, seed=seed).requires_grad_()
    z2 = z1.detach().clone().requires_grad_()
    ours = R.nt_xent(z1, index, tau)
    theirs = NTXentLoss(temperature=tau)(z2, index)  # labels = index
    assert scalars_close(ours, theirs, 1e-10)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(z1.grad, z2.grad, atol=1e-10, rtol=0)


def test_nt_xent_hand_loop():
    b, tau = 5, 0.3
    index = _shuffled_index(b, 7)
    z = randn(2 * b, 4, seed=7)
    zn = [r / math.sqrt(float(r @ r)) for r in z]
    total = 0.0
    for i in range(2 * b):
        partner = next(j for j in range(2 * b) if j != i and index[j] == index[i])
        s = [float(zn[i] @ zn[k]) / tau for k in range(2 * b)]
        denom = sum(math.exp(s[k]) for k in range(2 * b) if k != i)
        total += -math.log(math.exp(s[partner]) / denom)
    assert scalars_close(R.nt_xent(z, index, tau), total / (2 * b), 1e-12)


def test_nt_xent_rejects_index_without_exactly_two_views():
    with pytest.raises(ValueError):
        R.nt_xent(randn(5, 3), torch.tensor([0, 0, 1, 1, 1]), 0.5)


# ----------------------------------------------------------------------------- SupCon


def _supcon_hand(z, y, tau):
    n = len(z)
    zn = [r / math.sqrt(float(r @ r)) for r in z]
    s = [[float(zn[i] @ zn[k]) / tau for k in range(n)] for i in range(n)]
    losses = []
    for i in range(n):
        positives = [p for p in range(n) if p != i and y[p] == y[i]]
        if not positives:
            continue
        denom = sum(math.exp(s[i][k]) for k in range(n) if k != i)
        losses.append(-sum(math.log(math.exp(s[i][p]) / denom) for p in positives) / len(positives))
    return sum(losses) / len(losses), n - len(losses)


@pytest.mark.parametrize("seed,tau", [(0, 0.1), (1, 0.5), (2, 1.0)])
def test_supcon_matches_pml_when_every_class_has_two_members(seed, tau):
    from pytorch_metric_learning.losses import SupConLoss

    y = torch.tensor([0, 1, 2, 0, 1, 2, 2, 3, 3, 0, 1, 3])
    z1 = randn(12, 6, seed=seed).requires_grad_()
    z2 = z1.detach().clone().requires_grad_()
    ours, dropped = R.supcon_out_with_count(z1, y, tau)
    theirs = SupConLoss(temperature=tau)(z2, y)
    assert dropped == 0
    assert scalars_close(ours, theirs, 1e-10)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(z1.grad, z2.grad, atol=1e-10, rtol=0)


def test_supcon_pml_averaging_convention_with_singletons():
    """pml 2.9 SupConLoss: per anchor -(1/(|P(i)| + tiny)) sum_p log_prob (i.e. L_out, the 1/|P|
    inside the log-sum), reduced by AvgNonZeroReducer = mean over anchors whose loss is > 0.
    An anchor with no positive gets loss exactly 0 and is thereby excluded, so pml equals our
    mean over anchors with >= 1 positive even with singleton classes present (NOT a mean over
    positive pairs, NOT a mean over all anchors)."""
    from pytorch_metric_learning.losses import SupConLoss

    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 0, 4, 1, 2])  # classes 3 and 4 are singletons
    z = randn(12, 5, seed=3)
    ours, dropped = R.supcon_out_with_count(z, y, 0.2)
    assert dropped == 2
    assert scalars_close(ours, SupConLoss(temperature=0.2)(z, y), 1e-10)
    hand, hand_dropped = _supcon_hand(z, y, 0.2)
    assert scalars_close(ours, hand, 1e-12) and hand_dropped == 2
    # a mean over positive PAIRS would be a different number here (classes of unequal size)
    pos = (y[:, None] == y[None, :]) & ~torch.eye(12, dtype=torch.bool)
    s = F.normalize(z) @ F.normalize(z).T / 0.2
    log_q = torch.log_softmax(s.masked_fill(torch.eye(12, dtype=torch.bool), -math.inf), 1)
    per_pair = -log_q[pos].mean()
    assert not scalars_close(ours, per_pair, 1e-3)


def test_supcon_pml_returns_zero_without_negatives():
    """Known divergence: with a single class pml has no negative pair and returns 0, while
    L_out with A(i) = all k != i is well defined and positive."""
    from pytorch_metric_learning.losses import SupConLoss

    y = torch.zeros(6, dtype=torch.long)
    z = randn(6, 4, seed=4)
    assert float(SupConLoss(temperature=0.5)(z, y)) == 0.0
    ours = R.supcon_out(z, y, 0.5)
    assert scalars_close(ours, _supcon_hand(z, y, 0.5)[0], 1e-12) and float(ours) > 0


def test_supcon_is_mean_cross_entropy_of_icon_p_q():
    """I-Con's SupCon identity: p = uniform over same-label j != i, q = softmax_{k != i}(cos/tau)."""
    y = torch.tensor([0, 0, 1, 1, 1, 2, 5, 2])
    z = randn(8, 3, seed=5)
    eye = torch.eye(8, dtype=torch.bool)
    p = ((y[:, None] == y[None, :]) & ~eye).to(F64)
    p = p / p.sum(1, keepdim=True).clamp_min(1)
    q = torch.softmax((F.normalize(z) @ F.normalize(z).T / 0.4).masked_fill(eye, -math.inf), 1)
    ce, dropped = R.mean_cross_entropy(p, q)
    ours, ours_dropped = R.supcon_out_with_count(z, y, 0.4)
    assert scalars_close(ce, ours, 1e-12) and dropped == ours_dropped == 1


def test_supcon_raises_when_no_anchor_has_a_positive():
    with pytest.raises(ValueError):
        R.supcon_out(randn(4, 3), torch.arange(4), 0.5)


# ----------------------------------------------------------------------------- cross-entropy


def test_cross_entropy_manual_and_sklearn_log_loss():
    from sklearn.metrics import log_loss

    z, w = randn(20, 6, seed=0).requires_grad_(), randn(4, 6, seed=1)
    y = torch.randint(0, 4, (20,), generator=torch.Generator().manual_seed(2))
    a = R.cross_entropy_prototypes(z, w, y)
    b = R.cross_entropy_prototypes_manual(z, w, y)
    assert scalars_close(a, b, 1e-12)
    probs = torch.softmax(z.detach() @ w.T, 1).numpy()
    assert scalars_close(a, log_loss(y.numpy(), probs, labels=list(range(4))), 1e-10)
    (ga,) = torch.autograd.grad(a, z)
    (gb,) = torch.autograd.grad(b, z)
    torch.testing.assert_close(ga, gb, atol=1e-12, rtol=0)


def test_cross_entropy_manual_is_stable_for_large_logits():
    z, w = 1e3 * randn(5, 3, seed=0), randn(4, 3, seed=1)
    y = torch.tensor([0, 1, 2, 3, 0])
    b = R.cross_entropy_prototypes_manual(z, w, y)
    assert torch.isfinite(b) and scalars_close(b, R.cross_entropy_prototypes(z, w, y), 1e-9)


# ----------------------------------------------------------------------------- CLIP


def test_clip_symmetric_hand_loop():
    b, tau = 6, 0.07
    a, t = randn(b, 5, seed=0), randn(b, 5, seed=1)
    an = [r / math.sqrt(float(r @ r)) for r in a]
    tn = [r / math.sqrt(float(r @ r)) for r in t]
    s = [[float(an[i] @ tn[j]) / tau for j in range(b)] for i in range(b)]

    def ce(row, target):
        m = max(row)
        return -(row[target] - m - math.log(sum(math.exp(v - m) for v in row)))

    img = sum(ce(s[i], i) for i in range(b)) / b
    txt = sum(ce([s[j][i] for j in range(b)], i) for i in range(b)) / b
    assert scalars_close(R.clip_symmetric(a, t, tau), (img + txt) / 2, 1e-10)
    assert scalars_close(R.clip_symmetric(a, t, tau), R.clip_symmetric(t, a, tau), 1e-12)
    assert scalars_close(R.clip_symmetric(3.0 * a, t, tau), R.clip_symmetric(a, t, tau), 1e-12)


# ----------------------------------------------------------------------------- cluster kernel


def _soft_phi(n, c, seed):
    return torch.softmax(2 * randn(n, c, seed=seed), dim=1)


def test_cluster_kernel_properties_and_loop():
    phi = _soft_phi(9, 3, 0)
    q = R.cluster_kernel(phi)
    torch.testing.assert_close(q, q.T, atol=1e-14, rtol=0)
    torch.testing.assert_close(q.sum(0), torch.ones(9, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(q.sum(1), torch.ones(9, dtype=F64), atol=1e-12, rtol=0)
    for i in range(9):
        for j in range(9):
            v = sum(phi[i, c] * phi[j, c] / phi[:, c].sum() for c in range(3))
            assert scalars_close(q[i, j], v, 1e-14)


def test_cluster_kernel_hard_assignments():
    labels = torch.tensor([0, 2, 2, 0, 1, 2, 0, 0])  # sizes 4, 1, 3; cluster 3 empty
    phi = F.one_hot(labels, 4).to(F64)
    q = R.cluster_kernel(phi)
    size = torch.bincount(labels)
    expected = (labels[:, None] == labels[None, :]).to(F64) / size[labels][:, None]
    torch.testing.assert_close(q, expected, atol=1e-15, rtol=0)


# ----------------------------------------------------------------------------- k-means


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("hard", [False, True])
def test_soft_kmeans_reverse_kl_identity(sigma, hard):
    x = randn(15, 3, seed=1)
    phi = _soft_phi(15, 4, 2)
    if hard:
        phi = F.one_hot(phi.argmax(1), 4).to(F64)
    lhs, rhs = R.soft_kmeans_reverse_kl(x, phi, sigma)
    assert abs(float(lhs - rhs)) <= 1e-10 * max(1.0, abs(float(lhs)))


def test_soft_kmeans_identity_matches_scipy_kl_and_rejects_wrong_factor():
    from scipy.stats import entropy

    x, phi, sigma = randn(10, 2, seed=3), _soft_phi(10, 3, 4), 0.8
    lhs, rhs = R.soft_kmeans_reverse_kl(x, phi, sigma)
    q = R.cluster_kernel(phi).numpy()
    d2 = R.sqdist(x).numpy()
    p = np.exp(-d2 / (2 * sigma**2))
    p /= p.sum(1, keepdims=True)
    assert scalars_close(lhs, sum(entropy(q[i], p[i]) for i in range(10)), 1e-10)
    # the same right-hand side with 1/(2 sigma^2) instead of 1/sigma^2 is NOT the identity
    cost = float(R.soft_kmeans_cost(x, phi))
    assert not scalars_close(lhs, float(rhs) - cost / sigma**2 + cost / (2 * sigma**2), 1e-3)


def test_kmeans_inertia_matches_sklearn():
    from sklearn.cluster import KMeans

    centers = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]], dtype=F64)
    x = (centers.repeat_interleave(20, 0) + 0.7 * randn(60, 2, seed=5)).numpy()
    km = KMeans(n_clusters=3, n_init=5, tol=0.0, random_state=0).fit(x)
    assert scalars_close(
        R.kmeans_inertia_hard(x, km.labels_, km.cluster_centers_), km.inertia_, 1e-10 * km.inertia_
    )
    # converged on well-separated blobs: sklearn's centers are the label means
    assert scalars_close(R.kmeans_inertia_hard(x, km.labels_), km.inertia_, 1e-10 * km.inertia_)
    phi = F.one_hot(torch.as_tensor(km.labels_, dtype=torch.long), 3).to(F64)
    assert scalars_close(
        R.soft_kmeans_cost(torch.from_numpy(x), phi), km.inertia_, 1e-10 * km.inertia_
    )


# ----------------------------------------------------------------------------- t-SNE (joint)


@pytest.mark.parametrize("seed,n,perplexity", [(0, 30, 5.0), (1, 50, 12.0)])
def test_tsne_joint_kl_matches_sklearn_value_and_gradient(seed, n, perplexity):
    from sklearn.manifold._t_sne import _joint_probabilities, _kl_divergence

    x, y = randn(n, 6, seed=seed), randn(n, 2, seed=seed + 100).requires_grad_()
    p_condensed = _joint_probabilities(R.sqdist(x).numpy(), perplexity, 0)
    params = y.detach().numpy().ravel().copy()
    kl, grad = _kl_divergence(params, p_condensed, 1, n, 2)
    ours = R.tsne_joint_kl(x, y, perplexity)
    assert scalars_close(ours, kl, 1e-10)
    ours.backward()
    np.testing.assert_allclose(y.grad.numpy().ravel(), grad, atol=1e-10, rtol=1e-9)


def test_tsne_joint_p_properties():
    from scipy.spatial.distance import squareform
    from sklearn.manifold._t_sne import _joint_probabilities
    from sklearn.metrics import pairwise_distances

    x = randn(25, 4, seed=2)
    p = R.tsne_joint_p(x, 6.0)
    torch.testing.assert_close(p, p.T, atol=0, rtol=0)
    assert float(p.diagonal().abs().max()) == 0.0
    assert scalars_close(p.sum(), 1.0, 1e-12)
    # sklearn's own distance route (expanded-form euclidean, squared) gives the same P
    d_sk = pairwise_distances(x.numpy(), squared=True)
    np.testing.assert_allclose(
        squareform(_joint_probabilities(d_sk, 6.0, 0)), p.numpy(), atol=1e-7, rtol=0
    )
    # and it is the symmetrised conditional P of our own search, up to sklearn's tolerance
    pc = R.perplexity_conditional_p(x, 6.0)
    torch.testing.assert_close(p, (pc + pc.T) / (2 * 25), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- SNE (conditional)


@pytest.mark.parametrize("seed,n,perplexity", [(0, 40, 10.0), (1, 25, 3.0), (2, 12, 10.5)])
def test_perplexity_search_hits_target_and_matches_sklearn(seed, n, perplexity):
    from sklearn.manifold._utils import _binary_search_perplexity

    x = randn(n, 5, seed=seed)
    p = R.perplexity_conditional_p(x, perplexity)
    torch.testing.assert_close(p.sum(1), torch.ones(n, dtype=F64), atol=1e-12, rtol=0)
    assert float(p.diagonal().abs().max()) == 0.0
    h_bits = -(torch.special.xlogy(p, p) / math.log(2)).sum(1)
    assert float((2.0**h_bits - perplexity).abs().max()) <= 1e-5
    theirs = _binary_search_perplexity(R.sqdist(x).numpy().astype(np.float32), perplexity, 0)
    # sklearn stops at |H - log perp| <= 1e-5 nats on float32 distances: agreement ~1e-5
    np.testing.assert_allclose(p.numpy(), theirs, atol=2e-5, rtol=0)


def _conditional_hand(p, y, kernel):
    n = len(y)
    total = 0.0
    for i in range(n):
        w = [kernel(float(((y[i] - y[j]) ** 2).sum())) if j != i else 0.0 for j in range(n)]
        z = sum(w)
        total += sum(p[i][j] * math.log(p[i][j] / (w[j] / z)) for j in range(n) if p[i][j] > 0)
    return total / n


def test_conditional_sne_hand_loop_and_hinton_roweis_gradient():
    x, y = randn(15, 4, seed=0), randn(15, 2, seed=1).requires_grad_()
    loss = R.conditional_sne(x, y, 5.0)
    p = R.perplexity_conditional_p(x, 5.0)
    assert scalars_close(
        loss, _conditional_hand(p.tolist(), y.detach(), lambda d: math.exp(-d)), 1e-12
    )
    loss.backward()
    # Hinton & Roweis 2002: dC/dy_i = 2 sum_j (p_j|i - q_j|i + p_i|j - q_i|j)(y_i - y_j) for
    # C = sum_i KL; ours is the mean, hence / N
    yd = y.detach()
    d2 = R.sqdist(yd).fill_diagonal_(math.inf)
    q = torch.softmax(-d2, 1)
    m = p - q + (p - q).T
    grad = 2 * (m.sum(1, keepdim=True) * yd - m @ yd) / 15
    torch.testing.assert_close(y.grad, grad, atol=1e-12, rtol=0)


def test_conditional_tsne_hand_loop_and_gradient():
    x, y = randn(15, 4, seed=2), randn(15, 2, seed=3).requires_grad_()
    loss = R.conditional_tsne(x, y, 5.0)
    p = R.perplexity_conditional_p(x, 5.0)
    assert scalars_close(
        loss, _conditional_hand(p.tolist(), y.detach(), lambda d: 1 / (1 + d)), 1e-12
    )
    loss.backward()
    # hand derivation: dC/dy_i = 2 sum_j (p_j|i - q_j|i + p_i|j - q_i|j) w_ij (y_i - y_j),
    # w_ij = (1 + |y_i - y_j|^2)^-1, for C = sum_i KL (ours is the mean: / N)
    yd = y.detach()
    w = (1 / (1 + R.sqdist(yd))).fill_diagonal_(0)
    q = w / w.sum(1, keepdim=True)
    m = (p - q + (p - q).T) * w
    grad = 2 * (m.sum(1, keepdim=True) * yd - m @ yd) / 15
    torch.testing.assert_close(y.grad, grad, atol=1e-12, rtol=0)


def test_perplexity_out_of_range_raises():
    with pytest.raises(ValueError):
        R.perplexity_conditional_p(randn(5, 2), 10.0)


# ----------------------------------------------------------------------------- debias


def test_debias_rows_sum_to_one_and_support():
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3, 2])  # class 3 is a singleton: empty row
    eye = torch.eye(8, dtype=torch.bool)
    p = ((y[:, None] == y[None, :]) & ~eye).to(F64)
    p = p / p.sum(1, keepdim=True).clamp_min(1)
    pd = R.debias(p, 0.7)
    full = p.sum(1) > 0
    torch.testing.assert_close(pd.sum(1)[full], torch.ones(7, dtype=F64), atol=1e-14, rtol=0)
    assert float(pd[~full].abs().sum()) == 0.0  # empty rows stay empty (still dropped)
    assert float(pd.diagonal().abs().max()) == 0.0
    assert scalars_close(pd[0, 7], 0.7 / 7, 1e-15) and scalars_close(pd[0, 1], 0.3 + 0.1, 1e-15)
    # finite against a q that excludes the diagonal
    q = torch.softmax(randn(8, 8, seed=0).masked_fill(eye, -math.inf), 1)
    kl, dropped = R.mean_kl(pd, q)
    assert torch.isfinite(kl) and dropped == 1
    torch.testing.assert_close(R.debias(p, 0.0), p, atol=0, rtol=0)


def test_debias_over_all_columns():
    p = F.one_hot(torch.tensor([0, 3, 1, 3, 2]), 4).to(F64)
    pd = R.debias(p, 0.25, diagonal_excluded=False)
    torch.testing.assert_close(pd.sum(1), torch.ones(5, dtype=F64), atol=1e-15, rtol=0)
    assert scalars_close(pd[0, 0], 0.75 + 0.0625, 1e-15) and scalars_close(pd[0, 1], 0.0625, 1e-15)


def test_debias_rejects_mass_on_excluded_diagonal():
    with pytest.raises(ValueError):
        R.debias(torch.full((3, 3), 1 / 3, dtype=F64), 0.5)


# ----------------------------------------------------------------------------- mean KL / CE


def test_mean_kl_and_cross_entropy_against_scipy():
    from scipy.stats import entropy

    p = torch.softmax(randn(6, 5, seed=0), 1)
    p[1] = torch.tensor([0.0, 0.5, 0.0, 0.5, 0.0], dtype=F64)  # zeros: 0 log 0 = 0
    p[4] = 0.0  # empty row: dropped
    q = torch.softmax(randn(6, 5, seed=1), 1).requires_grad_()
    kl, dropped = R.mean_kl(p, q)
    ce, dropped_ce = R.mean_cross_entropy(p, q)
    rows = [0, 1, 2, 3, 5]
    pn, qn = p.numpy(), q.detach().numpy()
    assert dropped == dropped_ce == 1
    assert scalars_close(kl, np.mean([entropy(pn[i], qn[i]) for i in rows]), 1e-12)
    assert scalars_close(ce, np.mean([entropy(pn[i], qn[i]) + entropy(pn[i]) for i in rows]), 1e-12)
    (g,) = torch.autograd.grad(kl, q)
    assert torch.isfinite(g).all()
    expected = torch.zeros_like(p)
    expected[rows] = -(p[rows] / q.detach()[rows]) / len(rows)
    torch.testing.assert_close(g, expected, atol=1e-12, rtol=0)


def test_mean_kl_zero_q_under_p_mass_is_inf_and_gradient_safe_elsewhere():
    p = torch.tensor([[0.5, 0.5, 0.0]], dtype=F64)
    q = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    assert math.isinf(float(R.mean_kl(p, q)[0]))
    q2 = torch.tensor([[0.5, 0.5, 0.0]], dtype=F64, requires_grad=True)
    kl, _ = R.mean_kl(p, q2)
    (g,) = torch.autograd.grad(kl, q2)
    assert num(kl) == 0.0 and torch.isfinite(g).all()


def test_mean_kl_all_rows_empty_raises():
    with pytest.raises(ValueError):
        R.mean_kl(torch.zeros(2, 3, dtype=F64), torch.full((2, 3), 1 / 3, dtype=F64))
    with pytest.raises(ValueError):
        R.mean_cross_entropy(torch.zeros(2, 3, dtype=F64), torch.full((2, 3), 1 / 3, dtype=F64))
