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
#: Groups per pass of ``sampled``: their (groups, GROUP, m) terms, about 1 MiB at m = 32, stay
#: in cache while f, f' and the products read them (2.3x faster than whole tensors at
#: 70,000 rows, one thread).
CHUNK_GROUPS = 32


def cluster_mass(v: torch.Tensor) -> torch.Tensor:
    """n_c = sum_k v_kc, 1 where a cluster is empty (as the generated module) and at least
    eps^2 of v's dtype where it is nearly empty: 1 / n_c^2, its slope, must stay finite (a
    dying cluster's mass reached 1e-20 in float32 on raw 0-16 pixels, and its slope inf). The
    floor moves q by at most v_ic v_jc / n_c < eps^2 v_ic."""
    mass = v.sum(0)
    floor = torch.finfo(v.dtype).eps ** 2
    return torch.where(mass > 0, mass.clamp_min(floor), torch.ones_like(mass))


def without_underflow(v: torch.Tensor) -> torch.Tensor:
    """v with assignments below tiny^0.4 of its dtype (2^-50 in float32) set to 0.

    A softmax head drives the assignments of far clusters to subnormal numbers, and products
    of two small ones (q_ij, its slopes, v^T x) are subnormal too: on x86 each such operand
    slowed matrix products 60-130x (bmm and mm of 70,000 x 10 assignments, one thread). From
    numbers at least 2^-50 (times 1 / n_c >= 2^-24) every product is a normal number. The
    change to q is below 2^-50 of a term; the gradient of a zeroed entry is 0 (after the
    softmax it would be scaled by the entry itself). v >= 0 (``check_assignments``)."""
    return F.threshold(v, torch.finfo(v.dtype).tiny ** 0.4, 0.0)


def inverse_mass(v: torch.Tensor) -> torch.Tensor:
    """1 / n_c (``cluster_mass``)."""
    return 1 / cluster_mass(v)


def entropy_terms(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s log s and its slope log s + 1, with s log s = 0 at s = 0 (no 0 * inf).

    s >= 0 here (q and its debias are sums of products of nonnegative numbers). At s = 0 the
    slope is taken at the smallest normal number: q_ij = sum_c v_ic v_jc / n_c = 0 means every
    v_ic v_jc is 0, so the slope reaches only entries of v that are 0 themselves, whose
    gradient a softmax head scales by the entry (0) and ``without_underflow`` drops. Clamping
    costs one pass where finding and masking the zeros took three (``xlogy``: 10x slower)."""
    log_s = torch.log_(s.clamp_min(torch.finfo(s.dtype).tiny))
    return s * log_s, log_s.add_(1)


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
    w = F.pad(weight, (0, pad)).view(groups, group, 1)
    picked = v.index_select(0, cols.reshape(-1)).view(groups, m, k)
    scaled = picked * inv
    col_weight = weight.index_select(0, cols.reshape(-1)).view(groups, m, 1)
    # with slopes G_ij, row i gets w_i sum_j G_ij scaled_j and column j's share is
    # w_j G_ij scaled_j: one product of G with [scaled, w_col scaled] gives both
    both = torch.cat([scaled, scaled * col_weight], 2)
    own = torch.arange(groups * group, device=v.device).view(groups, group, 1)
    value, products = v.new_zeros(()), []
    for first in range(0, groups, CHUNK_GROUPS):  # the (chunk, group, m) terms stay in cache
        part = slice(first, first + CHUNK_GROUPS)
        q = torch.bmm(rows[part], scaled[part].transpose(1, 2))  # (chunk, group, m)
        values, slopes = fn(q.mul_(a).add_(b) if (a, b) != (1.0, 0.0) else q)
        if not diagonal:  # a column drawn equal to its row counts 0
            same = own[part] == cols[part, None, :]
            values.masked_fill_(same, 0.0)
            slopes.masked_fill_(same, 0.0)
        value += (values.sum(2, keepdim=True) * w[part]).sum()
        products.append(torch.bmm(slopes, both[part]))
    # dq_ij's share of the estimate is a n / m; picked = scaled / inv, so G @ picked is
    # (G @ scaled) / inv
    product = torch.cat(products).mul_(a * n / m)
    as_row, as_col = product[..., :k], product[..., k:]
    out = (w * as_row + as_col).view(-1, k)[:n]
    d_inv = (rows * w * as_row).sum((0, 1)) / inv
    return value * (n / m), out + _mass_gradient(v, inv, d_inv)
