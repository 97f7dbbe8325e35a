"""Neighbour embeddings (t-SNE, SNE and their kin) on large data: a sparse p, computed once.

For a table mapper whose p is a fixed function of x built from ``gaussian(x, perplexity=P)``,
``knn(x, k)``, ``walk`` and ``joint`` over them, and whose q is a kernel of f(x) normalised per
row or over the whole matrix (the generated module's closed-form neighbour family), large data
sets train on the whole data every epoch without an N x N matrix:

- p is built on the k nearest neighbours of each row (``neighbours.py``): a perplexity row keeps
  its k = min(N - 1, 3P) nearest neighbours, as openTSNE and scikit-learn's Barnes-Hut t-SNE do,
  and is calibrated to perplexity P on those k distances (the mass beyond them is below e^-3 of
  a row's for a Gaussian at that width, and dropped); knn rows are exact; walk multiplies the
  sparse matrices; joint symmetrises. p is an edge list (row, column, value).
- the attraction, -sum_ij p_ij log w_ij, is a sum over those edges;
- the normaliser of q, log sum_k w_ik per row (or log sum_kl w_kl for a joint q), either
  ``exact``: row blocks of ``NORMALISER_BLOCK`` x N with a closed-form backward (memory N x block,
  the dense numbers; O(N^2) time per epoch), or ``sampled``: ``negatives`` points drawn uniformly
  per row each epoch, log((N - 1) / m sum_(k in sample) w_ik) -- the negative-sampling
  (InfoNCE-style) estimate of contrastive neighbour embedding (Damrich et al., ICLR 2023), cost
  O(N m). By Jensen's inequality the sampled log-normaliser is biased low for finite m, and the
  gradient it gives is a ratio estimate whose bias shrinks as 1/m; tests check that its direction
  approaches the exact gradient's as m grows; or, for 1- and 2-D embeddings, ``interpolated``:
  the kernel's sums over all pairs on an FFT grid (``interpolate.py``), O(N) plus the grid.

p is built in ``sparse_p.py``; this module normalises q and optimises. q's kernel (log w and its slope) is the generated module's own ``_q_kernel``, so the objective is
the spec's; only p's support (kNN) and, with ``sampled``, the normaliser are approximations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from icon_dsl.large_data import NEIGHBOUR_NEGATIVES
from icon_dsl.train import interpolate
from icon_dsl.train.cluster_pairs import WithGradient
from icon_dsl.train.sparse_p import SparseP

Kernel = interpolate.Kernel

NORMALISER_BLOCK = 1024
NEGATIVES = NEIGHBOUR_NEGATIVES
NORMALISERS = ("exact", "sampled", "interpolated")

#: The optimisation of t-SNE implementations (openTSNE's defaults): 750 epochs of gradient
#: descent with momentum 0.8 and gains, the first third with the attraction exaggerated 12x
#: at a step of N / 12, then N (openTSNE's "auto" learning rate, for a gradient without t-SNE's
#: factor 4; this loss's gradient has it, hence the division by 4 below).
EPOCHS = 750
EXAGGERATION_SHARE = 1 / 3
EARLY_EXAGGERATION = 12.0
MOMENTUM = 0.8


def learning_rate(n: int) -> float:
    """The step during early exaggeration; it grows EARLY_EXAGGERATION times after."""
    return max(n / EARLY_EXAGGERATION, 200.0) / 4


# -- the normaliser of q ----------------------------------------------------------------------
class BlockedLogNormaliser(torch.autograd.Function):
    """log sum_(k != i) w(|z_i - z_k|^2) per row (joint: log sum_(k != l) w_kl, a scalar),
    computed NORMALISER_BLOCK rows at a time and recomputed in backward (memory block x N)."""

    @staticmethod
    def forward(ctx, z, kernel, joint, block):  # type: ignore[no-untyped-def]
        norms = (z * z).sum(1)
        parts = []
        for start in range(0, len(z), block):
            log_w, _ = _block_log_w(z, norms, start, block, kernel)
            parts.append(torch.logsumexp(log_w, dim=1))
        lse = torch.cat(parts)
        if joint:
            lse = torch.logsumexp(lse, 0)
        ctx.kernel, ctx.joint, ctx.block = kernel, joint, block
        ctx.save_for_backward(z, lse)
        return lse

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        z, lse = ctx.saved_tensors
        norms = (z * z).sum(1)
        out = torch.zeros_like(z)
        block = ctx.block
        for start in range(0, len(z), block):
            stop = min(start + block, len(z))
            log_w, slope = _block_log_w(z, norms, start, block, ctx.kernel)
            if ctx.joint:
                s = torch.exp(log_w - lse).mul_(grad)
            else:
                s = torch.exp(log_w - lse[start:stop, None]).mul_(grad[start:stop, None])
            s = s.mul_(slope)  # dL / d d2_ik; d d2_ik = 2 (z_i - z_k) . (dz_i - dz_k)
            rows = z[start:stop]
            out[start:stop] += 2 * (s.sum(1)[:, None] * rows - s @ z)
            out += 2 * (s.sum(0)[:, None] * z - s.T @ rows)
        return out, None, None, None


def _block_log_w(
    z: torch.Tensor, norms: torch.Tensor, start: int, block: int, kernel: Kernel
) -> tuple[torch.Tensor, torch.Tensor | float]:
    rows = z[start : start + block]
    d2 = (norms[start : start + block, None] + norms[None, :]).addmm_(rows, z.T, alpha=-2)
    log_w, slope = kernel(d2.clamp_min_(0))
    log_w.diagonal(start).fill_(-math.inf)  # q excludes k = i
    return log_w, slope


def exact_log_normaliser(z: torch.Tensor, kernel: Kernel, joint: bool, block: int) -> torch.Tensor:
    return BlockedLogNormaliser.apply(z, kernel, joint, block)  # type: ignore[no-any-return]


def sampled_log_normaliser(
    z: torch.Tensor, kernel: Kernel, joint: bool, negatives: int, generator: torch.Generator
) -> torch.Tensor:
    """The normaliser estimated from ``negatives`` uniform draws of k != i per row (autograd;
    the training path uses the closed form in ``NeighbourObjective``)."""
    draws = _draws(len(z), negatives, generator, z.device)
    d2 = ((z[:, None, :] - z[draws]) ** 2).sum(-1)
    log_w, _ = kernel(d2)
    shift = math.log((len(z) - 1) / negatives)
    if joint:
        return torch.logsumexp(log_w.flatten(), 0) + shift
    return torch.logsumexp(log_w, dim=1) + shift


def _draws(
    n: int, negatives: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """(n, negatives) uniform draws from the other rows (k != i)."""
    draws = torch.randint(0, n - 1, (n, negatives), generator=generator).to(device)
    return draws + (draws >= torch.arange(n, device=device)[:, None]).long()


#: Edges per block of the attraction: temporaries of a few MiB stay in cache and are reused
#: (70,000 rows x 90 edges: 110 -> 79 ms an epoch on one thread, 84 -> 51 ms on two, against
#: one pass over all edges).
EDGE_BLOCK = 2**18


# z is handled coordinate-major (d x N) below: on CPU, gathering and scatter-adding columns of a
# d x N matrix was 5-10x faster than index_add_ on the rows of an N x d one (1.8M edges, d = 2).
@torch.no_grad()
def _attraction(
    z: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    values: torch.Tensor,
    kernel: Kernel,
    per_row: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """-sum_e v_e log w(|z_r - z_c|^2) and its gradient: d2's is -v slope, z's 2 d2' (z_r - z_c).

    ``per_row``: every row has that many edges, in row order (a conditional kNN p), so a row's
    part is a sum over a view instead of a gather and a scatter-add (131 -> 96 ms an epoch at
    70,000 rows x 90 edges, two threads)."""
    zt = z.T.contiguous()
    gradient = torch.zeros_like(zt)
    value = zt.new_zeros(())
    size = EDGE_BLOCK if per_row is None else max(1, EDGE_BLOCK // per_row) * per_row
    for start in range(0, len(cols), size):
        edges = slice(start, start + size)
        c, v = cols[edges], values[edges]
        if per_row is None:
            r = rows[edges]
            diff = zt.index_select(1, r).sub_(zt.index_select(1, c))
        else:  # whole rows first .. first + m
            first, m = start // per_row, len(c) // per_row
            shape = (len(zt), m, per_row)
            diff = zt.index_select(1, c).view(shape).neg_().add_(zt[:, first : first + m, None])
            diff = diff.view(len(zt), -1)
        d2 = (diff * diff).sum(0)
        log_w, slope = kernel(d2)
        value -= torch.dot(v, log_w)
        step = diff.mul_((slope * v).mul_(-2))
        if per_row is None:
            gradient.scatter_add_(1, r.expand_as(step), step)
        else:
            gradient[:, first : first + m] += step.view(shape).sum(2)
        gradient.scatter_add_(1, c.expand_as(step), step.neg_())
    return value, gradient.T


def _edges_per_row(p: SparseP) -> int | None:
    """k when p's edges come in row order, k to every row (else None)."""
    edges = len(p.rows)
    if p.n == 0 or edges % p.n:
        return None
    k = edges // p.n
    expected = torch.arange(p.n, device=p.rows.device).repeat_interleave(k)
    return k if torch.equal(p.rows, expected) else None


@torch.no_grad()
def _sampled(
    z: torch.Tensor, mass: torch.Tensor, kernel: Kernel, joint: bool, draws: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_i mass_i log((N - 1) / m sum_k w_ik) over the drawn k (joint: one sum over all the
    draws, times the total mass) and its gradient."""
    n, m = draws.shape
    zt = z.T.contiguous()
    flat = draws.reshape(-1)
    diff = zt[:, :, None] - zt.index_select(1, flat).view(-1, n, m)
    d2 = (diff * diff).sum(0)
    log_w, slope = kernel(d2)
    shift = math.log((n - 1) / m)
    if joint:
        total = mass.sum()
        value = (torch.logsumexp(log_w.flatten(), 0) + shift) * total
        weight = torch.softmax(log_w.flatten(), 0).view(n, m) * total
    else:
        value = ((torch.logsumexp(log_w, 1) + shift) * mass).sum()
        weight = torch.softmax(log_w, 1) * mass[:, None]
    step = diff.mul_(2 * weight * slope).view(-1, n * m)
    gradient = step.view(-1, n, m).sum(2)
    gradient.scatter_add_(1, flat.expand_as(step), step.neg_())
    return value, gradient.T


# -- the objective ----------------------------------------------------------------------------
@dataclass
class NeighbourObjective:
    """-sum p log q over the whole data set, from a sparse p and one way of normalising q."""

    p: SparseP
    kernel: Kernel
    joint: bool  # q normalised over the whole matrix (else per row)
    normaliser: str = "exact"
    negatives: int = NEGATIVES
    block: int = NORMALISER_BLOCK

    def __post_init__(self) -> None:
        self.mass = self.p.row_mass()
        self.kept = int((self.mass > 0).sum())
        self.per_row = _edges_per_row(self.p)

    def terms(
        self, z: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(attraction, normaliser): the loss is their sum; the mean over kept rows (per-row q)
        or the matrix's sum (joint q), as the generated module's forward."""
        rows, cols = self.p.rows.to(z.device), self.p.cols.to(z.device)
        values = self.p.values.to(z.device, z.dtype)
        mass = self.mass.to(z.device, z.dtype)
        scale = 1.0 if self.joint else 1.0 / max(self.kept, 1)
        value, gradient = _attraction(z, rows, cols, values * scale, self.kernel, self.per_row)
        attraction = WithGradient.apply(z, value, gradient)
        if self.normaliser == "exact":
            lse = exact_log_normaliser(z, self.kernel, self.joint, self.block)
            return attraction, (lse * mass.sum() if self.joint else (mass * lse).sum() * scale)
        if self.normaliser == "interpolated":
            value, gradient = interpolate.log_normaliser(z, mass * scale, self.kernel, self.joint)
            return attraction, WithGradient.apply(z, value, gradient)
        if generator is None:
            raise ValueError("the sampled normaliser needs a generator")
        draws = _draws(len(z), self.negatives, generator, z.device)
        value, gradient = _sampled(z, mass * scale, self.kernel, self.joint, draws)
        return attraction, WithGradient.apply(z, value, gradient)


# -- the optimiser ----------------------------------------------------------------------------
class TsneDescent(torch.optim.Optimizer):
    """Gradient descent with momentum and per-coordinate gains, as t-SNE implementations do
    (openTSNE, scikit-learn): a gain grows by 0.2 while a coordinate keeps moving the same way
    and shrinks by x0.8 when the gradient flips, never below ``min_gain``; each point's step is
    clipped to ``max_step`` (openTSNE's max_step_norm)."""

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0.8,
        min_gain: float = 0.01,
        max_step: float = 5.0,
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "min_gain": min_gain, "max_step": max_step}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if not state:
                    state["gains"] = torch.ones_like(param)
                    state["update"] = torch.zeros_like(param)
                gains, update = state["gains"], state["update"]
                same = (update > 0) != (grad > 0)  # still moving downhill: speed up
                gains.copy_(
                    torch.where(same, gains + 0.2, gains * 0.8).clamp_min_(group["min_gain"])
                )
                update.mul_(group["momentum"]).sub_(grad * gains * group["lr"])
                if group["max_step"] is not None and update.dim() == 2:
                    norm = update.norm(dim=1, keepdim=True)
                    update.mul_((group["max_step"] / norm.clamp_min(1e-12)).clamp(max=1.0))
                param.add_(update)


# -- predictions for `icon-dsl explain --batch N` ---------------------------------------------
CALIBRATION_ROWS = (1024, 4096)


def predict(
    n: int,
    neighbours: int,
    negatives: int = NEGATIVES,
    normalisers: Sequence[str] = NORMALISERS,
) -> dict[str, tuple[float, float]]:
    """Predicted (seconds per epoch, peak bytes of the loss) on n rows for each normaliser.

    Timed, not guessed: epochs of each on CALIBRATION_ROWS random rows (Student-t kernel, 2-D)
    on this machine, the best of two, fitted as a fixed cost plus a cost per pair, and scaled
    to the pairs of n rows: N^2 for the exact row blocks (plus the edges), N (k + m) for the
    sampled one, N (k + 117) for the interpolated one (whose FFTs grow with the embedding's
    spread, not with N: timed at the spread of random rows, a grid of 150 x 150 nodes, as in
    early epochs). Memory counts the float32 temporaries of each: a block of NORMALISER_BLOCK x N
    (about 4 live copies), N m (about 6) or N x GRID_TERMS, and the edges (about 8 numbers
    each).
    """
    out = {}
    for normaliser in normalisers:
        sizes = (512, 2048) if normaliser == "exact" else CALIBRATION_ROWS
        timed = [_time_epoch(rows, neighbours, negatives, normaliser) for rows in sizes]
        pairs = _pairs(n, neighbours, negatives, normaliser)
        edges = 8.0 * 4 * n * neighbours
        if normaliser == "exact":
            memory = 4.0 * 4 * min(n, NORMALISER_BLOCK) * n + edges
        elif normaliser == "sampled":
            memory = 6.0 * 4 * n * negatives + edges
        else:  # spread and read-back terms; the early grid is small
            memory = 4.0 * n * interpolate.GRID_TERMS + edges
        out[normaliser] = (scaled_time(timed, pairs), memory)
    return out


def scaled_time(timed: list[tuple[float, float]], pairs: float) -> float:
    """Seconds for ``pairs`` pairs from two timed (pairs, seconds) epochs: a fixed cost plus a
    cost per pair, fitted through them (the larger one's average when the two do not rise)."""
    (w1, t1), (w2, t2) = timed
    per_pair = max((t2 - t1) / (w2 - w1), 0.0) or t2 / w2
    return max(t1 - per_pair * w1, 0.0) + per_pair * pairs


def _time_epoch(n: int, neighbours: int, negatives: int, normaliser: str) -> tuple[float, float]:
    """(pairs, seconds) of one epoch on n random rows, the best of two after a warm-up."""
    k, m = min(neighbours, n - 1), min(negatives, n - 1)
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(n, 2, generator=generator, requires_grad=True)
    rows = torch.arange(n).repeat_interleave(k)
    cols = torch.randint(0, n, (n * k,), generator=generator)
    p = SparseP(n, rows, cols, torch.full((n * k,), 1.0 / k, dtype=torch.float64), False)
    objective = NeighbourObjective(p, _student_t, False, normaliser, m)
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        attraction, normaliser_value = objective.terms(z, generator)
        (attraction + normaliser_value).backward()
        best = min(best, time.perf_counter() - started)
    return float(_pairs(n, k, m, normaliser)), best


def _pairs(n: int, neighbours: int, negatives: int, normaliser: str) -> int:
    """What an epoch's cost grows with: the pairs of the exact blocks (N^2), the sampled pairs
    (N m) or the grid terms of the interpolation (N x GRID_TERMS, 117); with the edges of p
    (N k) for each."""
    per_row = {"exact": n, "sampled": negatives, "interpolated": interpolate.GRID_TERMS}
    return n * (neighbours + per_row[normaliser])


def _student_t(d2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shared = d2 + 1
    return -torch.log(shared), -1 / shared
