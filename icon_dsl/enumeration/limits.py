"""The sigma-limit rows of the table: the leading term of the loss in sigma, derived with sympy.

Per anchor i, with d_j = d2(i, j) over q's support (M items) and p_j = p(j|i), the cross-entropy
against a Gaussian q of width sigma is H(sigma) = -sum_j p_j log softmax_j(-d / (2 sigma^2)).
With eps = 1 / (2 sigma^2), sympy derives (`derive`):

- sigma -> infinity: H = log M + eps * (sum_j p_j d_j - mean_k d_k) + O(eps^2);
- sigma -> 0: H / eps -> sum_j p_j d_j - min_k d_k (a margin-free, hardest-negative triplet).

On a euclidean kernel with a mapper that rescales f(x), sigma is absorbed (icon_dsl.scaling): the
"limit" rows would be the plain row. The enumeration's limit rows therefore use cosine distances
(d2 in [0, 4]), where the width is a real parameter and the remainders are bounded:
|2 sigma^2 (H - log M) - L_inf| <= 4^2 / (2 sigma^2) / 2 and 0 <= 2 sigma^2 H - L_0 <=
2 sigma^2 log M. `leading_term` evaluates L_inf or L_0 on a batch, so a test can watch the loss
approach it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

_M = 3  # the derivation is done on M symbolic distances, then checked against the general form


@dataclass(frozen=True)
class Limit:
    """A limit row: its regime, the leading term as a formula, and how the loss approaches it."""

    regime: str
    leading_term: str
    approach: str


LIMITS: dict[str, Limit] = {
    "sigma->inf": Limit(
        "sigma->inf",
        "L_inf = mean_i [ sum_j p(j|i) d2(i,j) - mean_k d2(i,k) ]  (cosine d2, k over q's "
        "support); loss = log M + L_inf / (2 sigma^2) + O(sigma^-4)",
        "2 sigma^2 (loss - log M) -> L_inf, error O(sigma^-2)",
    ),
    "sigma->0": Limit(
        "sigma->0",
        "L_0 = mean_i [ sum_j p(j|i) d2(i,j) - min_k d2(i,k) ]  (cosine d2, k over q's "
        "support): the hardest-negative triplet loss with margin 0",
        "0 <= 2 sigma^2 loss - L_0 <= 2 sigma^2 log M",
    ),
}


@cache
def derive() -> dict[str, Limit]:
    """Both leading terms, derived by sympy on M symbolic distances and checked against the
    general forms in `LIMITS` (asserted; about a second of sympy, so tests and docs call it)."""
    eps = sp.Symbol("epsilon", positive=True)
    d = sp.symbols(f"d1:{_M + 1}", nonnegative=True)
    p = sp.symbols(f"p1:{_M + 1}", nonnegative=True)
    log_z = sp.log(sum(sp.exp(-eps * dk) for dk in d))
    h = sum(pj * (eps * dj + log_z) for pj, dj in zip(p, d, strict=True))
    constant = sp.simplify(h.subs(eps, 0))
    slope = sp.simplify(sp.diff(h, eps).subs(eps, 0))  # the O(eps) coefficient
    want_slope = sum(pj * dj for pj, dj in zip(p, d, strict=True)) - sum(p) * sum(d) / _M
    assert sp.simplify(constant - sum(p) * sp.log(_M)) == 0
    assert sp.simplify(slope - want_slope) == 0
    # sigma -> 0: order the distances, d1 the smallest, d_k = d1 + g_k with g_k > 0; then
    # log Z = -eps d1 + rest, with rest = log(1 + sum_k exp(-eps g_k)) falling from log M
    # toward 0: rest / eps -> 0 and H / eps -> sum_j p_j d_j - d1.
    gaps = sp.symbols(f"g2:{_M + 1}", positive=True)
    rest = sp.log(1 + sum(sp.exp(-eps * g) for g in gaps))
    ordered = (d[0], *(d[0] + g for g in gaps))
    log_z0 = sp.log(sum(sp.exp(-eps * dk) for dk in ordered))
    assert sp.simplify(sp.exp(log_z0) - sp.exp(-eps * d[0] + rest)) == 0
    assert sp.simplify(rest.subs(eps, 0) - sp.log(_M)) == 0
    assert sp.diff(rest, eps).is_negative
    return LIMITS


def leading_term(regime: str, p: object, d2: object, support: object) -> float:
    """L_inf or L_0 for one batch: p (N x M), d2 (N x M), support (bool N x M); rows of p kept."""
    import torch

    assert isinstance(p, torch.Tensor) and isinstance(d2, torch.Tensor)
    assert isinstance(support, torch.Tensor)
    keep = p.sum(1) > 0
    attract = (p * torch.where(support, d2, 0.0)).sum(1)
    if regime == "sigma->inf":
        other = torch.where(support, d2, 0.0).sum(1) / support.sum(1)
    elif regime == "sigma->0":
        other = d2.masked_fill(~support, float("inf")).min(1).values
    else:
        raise ValueError(f"unknown limit regime {regime!r}")
    return float((attract - other)[keep].mean())
