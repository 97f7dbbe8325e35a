"""Independent reference implementations of I-Con objectives, for testing the compiler.

Everything here is written straight from the published formulas, dense (N x N or N x C), in
float64 torch, with no chunking, no caching and no shared code with ``icon_dsl``. The point is to
be obviously right, not fast. Each function is checked against an outside implementation
(pytorch-metric-learning, scikit-learn, scipy) or a hand calculation in ``test_references.py``.

Conventions:
- every loss returns a 0-d float64 tensor, differentiable w.r.t. the learned representation;
- supervisory distributions (p) built from data are constants (no gradient);
- rows of p without any mass (e.g. a class seen once in the batch, diagonal excluded) are
  dropped from the average and counted; if every row is empty a ``ValueError`` is raised
  instead of returning NaN or a silent zero.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

F64 = torch.float64


# ----------------------------------------------------------------------------- small helpers


def _f64(t) -> torch.Tensor:
    """Convert to float64, keeping the autograd graph of an input tensor."""
    return torch.as_tensor(t).to(F64)


def _unit(z: torch.Tensor) -> torch.Tensor:
    """Rows divided by their L2 norm."""
    return z / z.norm(dim=1, keepdim=True)


def _eye(n: int) -> torch.Tensor:
    return torch.eye(n, dtype=torch.bool)


def sqdist(a, b=None) -> torch.Tensor:
    """Dense squared euclidean distances |a_i - b_j|^2 from explicit differences (no expansion)."""
    a = _f64(a)
    b = a if b is None else _f64(b)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _partners(index: torch.Tensor) -> torch.Tensor:
    """partner[i] = the other row carrying the same index value; each value must occur twice."""
    rows: dict[int, list[int]] = {}
    for i, v in enumerate(index.tolist()):
        rows.setdefault(v, []).append(i)
    partner = [0] * len(index)
    for v, r in rows.items():
        if len(r) != 2:
            raise ValueError(f"index value {v} occurs {len(r)} times, expected exactly 2 views")
        partner[r[0]], partner[r[1]] = r[1], r[0]
    return torch.tensor(partner)


# ----------------------------------------------------------------------------- dense KL / CE


def _check_rows(p: torch.Tensor, name: str, rows: torch.Tensor) -> None:
    if (p < 0).any():
        raise ValueError(f"{name} has negative entries")
    s = p[rows].sum(1)
    if not torch.allclose(s, torch.ones_like(s), atol=1e-8, rtol=0):
        raise ValueError(f"rows of {name} do not sum to 1 (max error {(s - 1).abs().max():.3g})")


def mean_kl(p, q) -> tuple[torch.Tensor, int]:
    """Mean over rows of KL(p_i || q_i) = sum_j p_ij log(p_ij / q_ij), with 0 log 0 = 0.

    p, q: (N, M) row-stochastic probabilities. Rows of p that are all zero are dropped; returns
    (mean over kept rows, number of dropped rows). Differentiable w.r.t. q (and p). Where
    p_ij > 0 and q_ij = 0 the result is +inf, as it should be.
    """
    p, q = _f64(p), _f64(q)
    keep = p.sum(1) > 0
    if not keep.any():
        raise ValueError("every row of p is empty: no distribution to average")
    _check_rows(p, "p", keep)
    _check_rows(q, "q", keep)
    pos = p > 0
    p_safe = torch.where(pos, p, torch.ones_like(p))  # avoids 0 * log 0 -> NaN in backward
    q_safe = torch.where(pos, q, torch.ones_like(q))
    terms = torch.where(pos, p * (p_safe.log() - q_safe.log()), torch.zeros_like(p))
    return terms.sum(1)[keep].mean(), int((~keep).sum())


def mean_cross_entropy(p, q) -> tuple[torch.Tensor, int]:
    """Mean over rows of H(p_i, q_i) = -sum_j p_ij log q_ij (terms with p_ij = 0 skipped).

    Same row dropping and return convention as ``mean_kl``. H(p, q) = KL(p || q) + H(p).
    """
    p, q = _f64(p), _f64(q)
    keep = p.sum(1) > 0
    if not keep.any():
        raise ValueError("every row of p is empty: no distribution to average")
    _check_rows(p, "p", keep)
    _check_rows(q, "q", keep)
    pos = p > 0
    q_safe = torch.where(pos, q, torch.ones_like(q))
    terms = torch.where(pos, -p * q_safe.log(), torch.zeros_like(p))
    return terms.sum(1)[keep].mean(), int((~keep).sum())


def debias(p, alpha: float, diagonal_excluded: bool = True) -> torch.Tensor:
    """I-Con debiasing (Alshammari et al. 2025): p~ = (1 - alpha) p + alpha * uniform(support).

    diagonal_excluded=True: p is N x N with a zero diagonal, the uniform part is alpha/(N-1) on
    every j != i and the diagonal stays 0. Otherwise p is N x M and the uniform part is alpha/M
    on every column. Rows of p that are empty (no distribution) stay empty, so that they are
    still dropped downstream rather than turned into a pure-uniform row summing to alpha.
    """
    p = _f64(p)
    n, m = p.shape
    empty = p.sum(1) == 0
    if diagonal_excluded:
        if n != m:
            raise ValueError("diagonal_excluded needs a square p")
        if (p.diagonal() != 0).any():
            raise ValueError("p has mass on the excluded diagonal")
        u = (~_eye(n)).to(F64) / (n - 1)
    else:
        u = torch.full_like(p, 1.0 / m)
    out = (1 - alpha) * p + alpha * u
    return torch.where(empty[:, None], torch.zeros_like(out), out)


# ----------------------------------------------------------------------------- contrastive


def nt_xent(z, index, tau: float) -> torch.Tensor:
    """NT-Xent / InfoNCE (Chen et al. 2020, SimCLR eq. 1), mean over all 2B anchors.

    l_i = -log( exp(s_i,partner(i)) / sum_{k != i} exp(s_ik) ),  s = cos(z_i, z_k) / tau,
    partner(i) = the other row with the same ``index`` value (views need not be adjacent).
    """
    z = _unit(_f64(z))
    s = (z @ z.T / tau).masked_fill(_eye(len(z)), float("-inf"))
    return F.cross_entropy(s, _partners(index))


def supcon_out_with_count(z, y, tau: float) -> tuple[torch.Tensor, int]:
    """SupCon L_out (Khosla et al. 2020, eq. 2) and the number of anchors dropped.

    L = mean_{i : |P(i)| > 0}  -(1/|P(i)|) sum_{p in P(i)} log( exp(s_ip) / sum_{k != i} exp(s_ik) )
    with s = cos / tau, A(i) = all k != i, P(i) = {p != i : y_p = y_i}. Anchors with no positive
    are left out of the mean and counted.
    """
    z = _unit(_f64(z))
    n = len(z)
    eye = _eye(n)
    log_q = torch.log_softmax((z @ z.T / tau).masked_fill(eye, float("-inf")), dim=1)
    pos = (y[:, None] == y[None, :]) & ~eye
    n_pos = pos.sum(1)
    keep = n_pos > 0
    if not keep.any():
        raise ValueError("no anchor has a positive: SupCon is undefined")
    per_anchor = -log_q.masked_fill(~pos, 0.0).sum(1)[keep] / n_pos[keep]
    return per_anchor.mean(), int((~keep).sum())


def supcon_out(z, y, tau: float) -> torch.Tensor:
    """SupCon L_out (Khosla et al. 2020, eq. 2); see ``supcon_out_with_count``."""
    return supcon_out_with_count(z, y, tau)[0]


def clip_symmetric(a, t, tau: float) -> torch.Tensor:
    """Symmetric CLIP loss (Radford et al. 2021, Fig. 3 pseudocode).

    logits = a_hat t_hat^T / tau (rows L2-normalised); (CE(logits, arange) + CE(logits^T, arange))/2.
    """
    logits = _unit(_f64(a)) @ _unit(_f64(t)).T / tau
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


# ----------------------------------------------------------------------------- classification


def cross_entropy_prototypes(z, W, y) -> torch.Tensor:
    """Softmax cross-entropy against class prototypes: mean_i -log softmax_c(z_i . w_c)[y_i]."""
    return F.cross_entropy(_f64(z) @ _f64(W).T, y)


def cross_entropy_prototypes_manual(z, W, y) -> torch.Tensor:
    """Same as ``cross_entropy_prototypes`` with an explicit max-shifted log-sum-exp."""
    logits = _f64(z) @ _f64(W).T
    m = logits.max(dim=1, keepdim=True).values.detach()
    lse = m[:, 0] + torch.log(torch.exp(logits - m).sum(1))
    return (lse - logits[torch.arange(len(logits)), y]).mean()


# ----------------------------------------------------------------------------- clustering


def cluster_kernel(phi) -> torch.Tensor:
    """I-Con cluster kernel q_ij = sum_c phi_ic phi_jc / sum_k phi_kc (j = i included).

    phi: (N, C) soft assignments, rows summing to 1. Empty clusters (column sum 0) contribute
    nothing and are skipped (they would be 0/0). Result: symmetric, row- and column-stochastic.
    """
    phi = _f64(phi)
    if (phi < 0).any() or not torch.allclose(phi.sum(1), torch.ones(len(phi), dtype=F64)):
        raise ValueError("phi must be non-negative with rows summing to 1")
    size = phi.sum(0)
    phi = phi[:, size > 0]
    return (phi / size[size > 0]) @ phi.T


def soft_centroids(x, phi) -> torch.Tensor:
    """mu_c = sum_i phi_ic x_i / sum_i phi_ic, shape (C, D)."""
    x, phi = _f64(x), _f64(phi)
    return (phi.T @ x) / phi.sum(0)[:, None]


def soft_kmeans_cost(x, phi) -> torch.Tensor:
    """sum_c sum_i phi_ic |x_i - mu_c|^2 (equals k-means inertia for one-hot phi)."""
    x, phi = _f64(x), _f64(phi)
    return (phi * sqdist(x, soft_centroids(x, phi))).sum()


def soft_kmeans_reverse_kl(x, phi, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides of I-Con's probabilistic k-means identity (reverse KL).

    lhs = sum_i KL(q_i || p_i), q = cluster_kernel(phi), p_i = softmax_j(-|x_i-x_j|^2/(2 s^2))
          over ALL j (j = i included), Z_i = sum_j exp(-|x_i-x_j|^2/(2 s^2)).
    rhs = (1/s^2) sum_c sum_i phi_ic |x_i - mu_c|^2 - sum_i H(q_i) + sum_i log Z_i.

    Derivation (checked numerically to 1e-12 in the tests): since rows of q sum to 1,
      KL(q_i||p_i) = -H(q_i) + sum_j q_ij |x_i-x_j|^2 / (2 s^2) + log Z_i, and for each cluster
      sum_ij phi_ic phi_jc |x_i-x_j|^2 = 2 n_c sum_i phi_ic |x_i-mu_c|^2 (n_c = sum_k phi_kc),
      so sum_ij q_ij |x_i-x_j|^2 = 2 * soft-k-means cost. The factor 2 cancels the 1/(2 s^2):
    the identity holds EXACTLY as stated, with 1/s^2 and no correction. The "constant"
    sum_i log Z_i depends on x and s only (not on phi), so minimising over phi it is constant.
    """
    x, phi = _f64(x), _f64(phi)
    q = cluster_kernel(phi)
    logits = -sqdist(x) / (2 * sigma**2)
    log_p = torch.log_softmax(logits, dim=1)
    log_z = torch.logsumexp(logits, dim=1)
    q_log_q = torch.special.xlogy(q, q)
    lhs = (q_log_q - q * log_p).sum()
    entropy_q = -q_log_q.sum(1)
    rhs = soft_kmeans_cost(x, phi) / sigma**2 - entropy_q.sum() + log_z.sum()
    return lhs, rhs


def kmeans_inertia_hard(x, labels, centers=None) -> torch.Tensor:
    """k-means inertia sum_i |x_i - mu_{labels_i}|^2 (Lloyd 1982; sklearn's ``inertia_``).

    centers: (K, D) to use; default the means of the points carrying each label.
    """
    x = _f64(x)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if centers is None:
        k = int(labels.max()) + 1
        onehot = F.one_hot(labels, k).to(F64)
        centers = (onehot.T @ x) / onehot.sum(0)[:, None]
    return ((x - _f64(centers)[labels]) ** 2).sum()


# ----------------------------------------------------------------------------- SNE / t-SNE


def _row_entropy_p(d: torch.Tensor, beta: float) -> tuple[float, torch.Tensor]:
    """p_j ∝ exp(-beta d_j) (d shifted by its min for stability) and its entropy in nats."""
    w = torch.exp(-beta * (d - d.min()))
    p = w / w.sum()
    return float(-torch.special.xlogy(p, p).sum()), p


def perplexity_conditional_p(x, perplexity: float, tol: float = 1e-13) -> torch.Tensor:
    """SNE conditional p_{j|i} (Hinton & Roweis 2002; van der Maaten & Hinton 2008, eq. 1).

    p_{j|i} = exp(-beta_i d_ij) / sum_{k != i} exp(-beta_i d_ik), d = squared euclidean
    distances of x, diagonal excluded (p_{i|i} = 0), beta_i = 1/(2 sigma_i^2) found by bisection
    so that H(p_i) = log(perplexity) in nats (i.e. 2^{H in bits} = perplexity).
    Returns the N x N row-stochastic matrix (constant, float64).
    """
    d2 = sqdist(_f64(x).detach())
    n = len(d2)
    target = math.log(perplexity)
    if not 1.0 <= perplexity <= n - 1:
        raise ValueError(f"perplexity must lie in [1, N-1] = [1, {n - 1}]")
    out = torch.zeros(n, n, dtype=F64)
    for i in range(n):
        d = torch.cat([d2[i, :i], d2[i, i + 1 :]])
        lo, hi = 0.0, 1.0
        for _ in range(2000):  # H decreases in beta: grow hi until H(hi) < target
            if _row_entropy_p(d, hi)[0] < target:
                break
            lo, hi = hi, hi * 2
        else:
            raise ValueError(f"row {i}: perplexity {perplexity} unreachable")
        for _ in range(300):
            mid = (lo + hi) / 2
            h, p = _row_entropy_p(d, mid)
            if abs(h - target) < tol or hi - lo <= 1e-300:
                break
            lo, hi = (mid, hi) if h > target else (lo, mid)
        if abs(h - target) > 1e-10:
            raise ValueError(f"row {i}: perplexity search did not converge ({h} vs {target})")
        out[i, :i], out[i, i + 1 :] = p[:i], p[i:]
    return out


def _row_kl_mean(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """mean_i sum_{j != i} p_ij (log p_ij - log q_ij); p has a zero diagonal, log_q a -inf one."""
    off = ~_eye(len(p))
    terms = torch.special.xlogy(p, p) - p * log_q.masked_fill(~off, 0.0)
    return terms.sum(1).mean()


def conditional_sne(x, y_embed, perplexity: float) -> torch.Tensor:
    """SNE (Hinton & Roweis 2002): mean_i KL(p_i || q_i), q_{j|i} = softmax_{j != i}(-|y_i-y_j|^2).

    p from ``perplexity_conditional_p``; q is Gaussian with fixed sigma^2 = 1/2.
    """
    p = perplexity_conditional_p(x, perplexity)
    y = _f64(y_embed)
    log_q = torch.log_softmax((-sqdist(y)).masked_fill(_eye(len(y)), float("-inf")), dim=1)
    return _row_kl_mean(p, log_q)


def conditional_tsne(x, y_embed, perplexity: float) -> torch.Tensor:
    """Conditional t-SNE (I-Con's per-row form): mean_i KL(p_i || q_i),

    q_{j|i} = (1 + |y_i-y_j|^2)^-1 / sum_{k != i} (1 + |y_i-y_k|^2)^-1 (Student-t, dof 1).
    """
    p = perplexity_conditional_p(x, perplexity)
    y = _f64(y_embed)
    eye = _eye(len(y))
    log_w = (-torch.log1p(sqdist(y))).masked_fill(eye, float("-inf"))
    return _row_kl_mean(p, torch.log_softmax(log_w, dim=1))


def tsne_joint_p(x, perplexity: float) -> torch.Tensor:
    """Joint t-SNE P (van der Maaten & Hinton 2008, eq. 2-3) computed by scikit-learn itself.

    ``sklearn.manifold._t_sne._joint_probabilities`` on the float64 squared euclidean distances
    of x (it casts them to float32, runs its binary search, symmetrises (P + P^T)/sum and clamps
    at machine epsilon). Returns the N x N matrix, zero diagonal, summing to 1 (up to the clamp).
    """
    from scipy.spatial.distance import squareform
    from sklearn.manifold._t_sne import _joint_probabilities

    d2 = sqdist(_f64(x).detach()).numpy()
    condensed = _joint_probabilities(d2, perplexity, 0)
    return torch.from_numpy(np.asarray(squareform(condensed), dtype=np.float64))


def tsne_joint_kl(x, y_embed, perplexity: float) -> torch.Tensor:
    """Exact t-SNE objective KL(P || Q) = sum_{i != j} P_ij log(P_ij / Q_ij)
    (van der Maaten & Hinton 2008, eq. 4), Q_ij = w_ij / sum_{k != l} w_kl with
    w_ij = (1 + |y_i - y_j|^2)^-1. P (``tsne_joint_p``) is a constant.
    """
    p = tsne_joint_p(x, perplexity)
    y = _f64(y_embed)
    off = ~_eye(len(y))
    w = 1.0 / (1.0 + sqdist(y))
    q = w[off] / w[off].sum()
    return (p[off] * (p[off].log() - q.log())).sum()
