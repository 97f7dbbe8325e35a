"""Sums over pairs of the cluster kernel q = cluster(v), without an N x N matrix.

``cluster(v)`` of soft assignments v (N x C, rows on the simplex) is q_ij = sum_c v_ic v_jc / n_c
with n_c = sum_k v_kc (a cluster of mass 0 divides by 1, as the generated module does): a rank-C
matrix whose rows already sum to 1, so it has no normaliser. What the clustering objectives of
``cluster.py`` need from it is sums of an elementwise function of q over pairs,
sum_(i, j) w_i f(a q_ij + b) (a, b: a debias; f: q log q, log q), three ways:

- ``blocked``: over all pairs (j = i in or out), ``BLOCK`` rows x N at a time, recomputed in the
  backward with the gradient in closed form (memory N x BLOCK; O(N^2 C) time): the dense numbers;
- ``on_pairs``: over a list of pairs (p's sparse support, or sampled columns), in chunks, value
  and gradient in closed form;
- ``sampled``: m columns drawn uniformly from all N for each group of GROUP rows (shared
  within the group, so that q on them is one batched matrix product): times N / m their sum is
  an unbiased estimate of the blocked one (a column equal to its row counts 0 where j = i is
  out), and so is its gradient (the sum is linear in the terms: no log of an estimate).

The gradient of a sum with slopes G_ij = w_i f'(q_ij) a reaches v three ways: through v_i (row),
through v_j (column) and through the masses n_c (every row of cluster c).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

#: f(s) -> (f(s), f'(s)) elementwise, s = a q + b.
Fn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

BLOCK = 1024
CHUNK = 1 << 19  # pairs per chunk of ``on_pairs`` (C numbers gathered per pair, twice)
#: Rows sharing one draw of m columns in ``sampled``: q on them is one batched matrix product
#: (gathering C numbers per row and column was 10x slower: 0.74 s against ~0.07 s an epoch on
#: 20,000 rows, m = 64, 2 cores).
GROUP = 256


def cluster_mass(v: torch.Tensor) -> torch.Tensor:
    """n_c = sum_k v_kc, 1 where a cluster is empty (as the generated module) and at least
    eps^2 of v's dtype where it is nearly empty: 1 / n_c^2, its slope, must stay finite (a
    dying cluster's mass reached 1e-20 in float32 on raw 0-16 pixels, and its slope inf). The
    floor moves q by at most v_ic v_jc / n_c < eps^2 v_ic."""
    mass = v.sum(0)
    floor = torch.finfo(v.dtype).eps ** 2
    return torch.where(mass > 0, mass.clamp_min(floor), torch.ones_like(mass))


def inverse_mass(v: torch.Tensor) -> torch.Tensor:
    """1 / n_c (``cluster_mass``)."""
    return 1 / cluster_mass(v)


def entropy_terms(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s log s and its slope log s + 1; 0 and 0 where s = 0 (no 0 * inf)."""
    log_s = torch.log(s)
    value, slope = s * log_s, log_s.add_(1)  # xlogy was 10x slower here
    if bool(s.min() <= 0):  # rare (an assignment underflowed): mask only then
        empty = s <= 0
        value.masked_fill_(empty, 0.0)
        slope.masked_fill_(empty, 0.0)
    return value, slope


def log_terms(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log s and its slope 1 / s; -inf with a zero slope where s = 0 (the generated ``_log``)."""
    if bool(s.min() > 0):  # the usual case (always under a debias)
        return torch.log(s), 1 / s
    positive = s > 0
    safe = torch.where(positive, s, torch.ones_like(s))
    return torch.log(safe).masked_fill(~positive, -math.inf), torch.where(positive, 1 / safe, 0.0)


def _mass_gradient(v: torch.Tensor, inv: torch.Tensor, d_inv: torch.Tensor) -> torch.Tensor:
    """The gradient a change of 1 / n_c (``d_inv``) gives every row: n_c = sum_k v_kc."""
    mass = v.sum(0)
    d_mass = torch.where(mass > torch.finfo(v.dtype).eps ** 2, (-d_inv * inv) * inv, 0.0)
    return d_mass.expand_as(v)


# -- all pairs, by row blocks -----------------------------------------------------------------
class BlockedPairSum(torch.autograd.Function):
    """sum_i w_i sum_j f(a q_ij + b) over all j (``diagonal``) or j != i, by row blocks."""

    @staticmethod
    def forward(ctx, v, weight, fn, a, b, diagonal, block):  # type: ignore[no-untyped-def]
        inv = inverse_mass(v)
        total = v.new_zeros(())
        for start in range(0, len(v), block):
            values, _ = _block(v, inv, start, block, fn, a, b, diagonal)
            total += (values.sum(1) * weight[start : start + block]).sum()
        ctx.fn, ctx.a, ctx.b, ctx.diagonal, ctx.block = fn, a, b, diagonal, block
        ctx.save_for_backward(v, weight)
        return total

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        v, weight = ctx.saved_tensors
        inv = inverse_mass(v)
        out = torch.zeros_like(v)
        d_inv = torch.zeros_like(inv)
        for start in range(0, len(v), ctx.block):
            stop = min(start + ctx.block, len(v))
            _, slopes = _block(v, inv, start, ctx.block, ctx.fn, ctx.a, ctx.b, ctx.diagonal)
            g = slopes.mul_(weight[start:stop, None] * (grad * ctx.a))  # dL / dq_ij
            rows = v[start:stop]
            gv = g @ v
            out[start:stop] += gv * inv
            out += g.T @ (rows * inv)
            d_inv += (rows * gv).sum(0)
        return out + _mass_gradient(v, inv, d_inv), None, None, None, None, None, None


def _block(
    v: torch.Tensor,
    inv: torch.Tensor,
    start: int,
    block: int,
    fn: Fn,
    a: float,
    b: float,
    diagonal: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """f and f' of a q + b on rows start:start+block against every column (j = i zeroed
    unless ``diagonal``)."""
    q = (v[start : start + block] * inv) @ v.T
    values, slopes = fn(q.mul_(a).add_(b) if (a, b) != (1.0, 0.0) else q)
    if not diagonal:
        values.diagonal(start).fill_(0.0)
        slopes.diagonal(start).fill_(0.0)
    return values, slopes


def blocked(
    v: torch.Tensor,
    weight: torch.Tensor,
    fn: Fn,
    a: float = 1.0,
    b: float = 0.0,
    diagonal: bool = True,
    block: int = BLOCK,
) -> torch.Tensor:
    """sum_i weight_i sum_j f(a q_ij + b), every pair (autograd through the closed form)."""
    return BlockedPairSum.apply(v, weight, fn, a, b, diagonal, block)  # type: ignore[no-any-return]


# -- a list of pairs --------------------------------------------------------------------------
@torch.no_grad()
def on_pairs(
    v: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    weight: torch.Tensor,
    fn: Fn,
    a: float = 1.0,
    b: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_e weight_e f(a q_(rows_e, cols_e) + b) and its gradient in v, in chunks of CHUNK."""
    inv = inverse_mass(v)
    scaled = v * inv
    value = v.new_zeros(())
    out = torch.zeros_like(v)
    d_inv = torch.zeros_like(inv)
    for start in range(0, len(rows), CHUNK):
        r, c = rows[start : start + CHUNK], cols[start : start + CHUNK]
        left, right = v.index_select(0, r), scaled.index_select(0, c)
        q = (left * right).sum(1)
        values, slopes = fn(q * a + b if (a, b) != (1.0, 0.0) else q)
        w = weight[start : start + CHUNK]
        value += (w * values).sum()
        g = (w * slopes * a)[:, None]
        out.index_add_(0, r, g * right)
        out.index_add_(0, c, g * left * inv)
        d_inv += (g * left * v.index_select(0, c)).sum(0)
    return value, out + _mass_gradient(v, inv, d_inv)


class WithGradient(torch.autograd.Function):
    """A value whose gradient in its input was computed beside it, in closed form (the
    clustering sums here and the neighbour embedding's terms in sparse.py)."""

    @staticmethod
    def forward(ctx, v, value, gradient):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(gradient)
        return value

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        (gradient,) = ctx.saved_tensors
        return grad * gradient, None, None


def sampled(
    v: torch.Tensor,
    weight: torch.Tensor,
    fn: Fn,
    m: int,
    generator: torch.Generator,
    a: float = 1.0,
    b: float = 0.0,
    diagonal: bool = True,
    group: int = GROUP,
) -> torch.Tensor:
    """The unbiased estimate of ``blocked`` from m uniform columns per row (autograd-ready).

    The rows come in groups of ``group``, each group with its own m columns drawn uniformly
    from all N (with replacement), so that q on them is one batched matrix product; a row's
    sum over its columns times N / m is unbiased (for j != i a column equal to its row counts
    0). The gradient is estimated beside it, in closed form, and is unbiased too, but it is not
    the derivative of this value: v_k reaches the sum as a row (sum_j w_k f'(q_kj) dq_kj/dv_k)
    and as a column (sum_i w_i f'(q_ik) dq_ik/dv_k), and since q is symmetric the column part is
    sum_j w_j f'(q_kj) dq_kj/dv_k, estimated from row k's own m columns. Differentiating the
    value instead would see row k as a column only when a group draws it, m / group times an
    epoch (the gradient's cosine to the exact one stayed at 0.87 with m = 1024, N = 300)."""
    value, gradient = _sampled(
        v.detach(), weight.to(v.dtype), fn, m, generator, a, b, diagonal, group
    )
    return WithGradient.apply(v, value, gradient)  # type: ignore[no-any-return]


@torch.no_grad()
def _sampled(
    v: torch.Tensor,
    weight: torch.Tensor,
    fn: Fn,
    m: int,
    generator: torch.Generator,
    a: float,
    b: float,
    diagonal: bool,
    group: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    n, k = v.shape
    groups = -(-n // group)
    pad = groups * group - n
    inv = inverse_mass(v)
    cols = torch.randint(0, n, (groups, m), generator=generator).to(v.device)
    rows = F.pad(v, (0, 0, 0, pad)).view(groups, group, k)
    w = F.pad(weight, (0, pad)).view(groups, group, 1) * (n / m)
    picked = v.index_select(0, cols.reshape(-1)).view(groups, m, k)
    scaled = picked * inv
    q = torch.bmm(rows, scaled.transpose(1, 2))  # (groups, group, m)
    values, slopes = fn(q.mul_(a).add_(b) if (a, b) != (1.0, 0.0) else q)
    if not diagonal:  # a column drawn equal to its row counts 0
        own = torch.arange(groups * group, device=v.device).view(groups, group, 1)
        same = own == cols[:, None, :]
        values = values.masked_fill(same, 0.0)
        slopes = slopes.masked_fill(same, 0.0)
    value = (values * w).sum()
    g = slopes.mul_(a * n / m)  # dq_ij's share of the estimate, (groups, group, m)
    row_weight = w * (m / n)
    col_weight = weight.index_select(0, cols.reshape(-1)).view(groups, 1, m)
    out = torch.bmm(g * (row_weight + col_weight), scaled).view(-1, k)[:n]
    d_inv = (rows * torch.bmm(g * row_weight, picked)).sum((0, 1))
    return value, out + _mass_gradient(v, inv, d_inv)
