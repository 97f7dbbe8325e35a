"""Clustering heads on large data: the spec's objective on the whole data set every epoch.

For a parametric mapper with ``softmax=true`` whose q is ``cluster(f(x))`` or
``debias(cluster(f(x)), beta)``, large data sets train on every row each epoch, one step an epoch,
without an N x N matrix (``cluster_pairs.py`` has the sums over pairs of q):

- ``reverse_kl(p, q)`` with ``p = gaussian(x, sigma, diagonal=true)`` (kmeans.icon): per row,
  sum_j q_ij log q_ij - sum_j q_ij log p_ij. The cross term is exact in O(N C D) through q's low
  rank: log p_ij = -c |x_i - x_j|^2 - log Z_i (c = 1 / (2 sigma^2)) and
  sum_j q_ij |x_i - x_j|^2 = sum_c v_ic / n_c (n_c |x_i|^2 - 2 x_i . S_c + T_c) with
  S_c = sum_j v_jc x_j, T_c = sum_j v_jc |x_j|^2; log Z_i does not depend on the parameters and
  is computed (by row blocks, once) only for the ``exact`` normaliser, whose loss then equals the
  generated module's. The entropy term sum_j q_ij log q_ij needs every pair: ``exact`` by row
  blocks, or ``sampled``: m uniform columns per row, an unbiased estimate (value and gradient).
  With ``sampled`` the recorded loss leaves out the constant mean_i log Z_i.
- ``kl(p, q)`` with p = S or ``debias(S, alpha)``, S sparse (``knn``, ``walk``, ``union``,
  ``augmentation(index)``, perplexity ``gaussian``; ``sparse_p.py``): the cross-entropy
  -sum_j p_ij log q~_ij is a sum over S's edges, weighted 1 - alpha, plus for the debias part
  alpha / #support times sum_j log q~_ij over the whole row: ``exact`` by row blocks or
  ``sampled``. Rows of an ``augmentation`` without another view are left out, as the generated
  module leaves them out. With views, p is rebuilt on each epoch's views (their kNN included).

q's ``debias(., beta)`` is q~ = (1 - beta) q + beta / N (j = i is in cluster's support).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import sympy as sp
import torch

from icon_dsl.ir import IR
from icon_dsl.large_data import CLUSTER_NEGATIVES
from icon_dsl.train import cluster_pairs as pairs
from icon_dsl.train import sparse_p
from icon_dsl.train.sparse import scaled_time

NORMALISERS = ("exact", "sampled")
#: Columns per row and epoch of the sampled estimate. For kmeans.icon at its sigma the entropy
#: term is a few per cent of the gradient (docs/performance.md).
NEGATIVES = CLUSTER_NEGATIVES
LOG_Z_BLOCK = 1024
SCORE_SEED = 0x5C0E  # the draws of the sampled score that picks the kept start (all starts alike)


# -- the objective ----------------------------------------------------------------------------
class ClusterObjective:
    """The spec's loss on the whole data set: ``prepare`` the data of an epoch, then ``loss``
    of the assignments v = f(x) of every row."""

    def __init__(
        self,
        ir: IR,
        hypers: Mapping[str, float],
        normaliser: str = "exact",
        negatives: int = NEGATIVES,
        block: int = pairs.BLOCK,
    ) -> None:
        if normaliser not in NORMALISERS:
            raise ValueError(f"unknown normaliser {normaliser!r}")
        self.ir, self.normaliser, self.negatives, self.block = ir, normaliser, negatives, block
        self.hypers = {name: h.default for name, h in ir.hypers.items() if h.default is not None}
        self.hypers.update(hypers)
        self.reverse = ir.op(ir.roots["loss"]) == "reverse_kl"
        q = ir.roots["q"]
        self.q_alpha = self._num(ir.args(q)["alpha"]) if ir.op(q) == "debias" else 0.0
        self.fixed = "index" not in _inputs_of(ir, ir.roots["p"])  # p of x alone: build once
        self.key: Any = None
        self.parts: dict[str, Any] = {}

    def _num(self, value: Any) -> float:
        if isinstance(value, sp.Basic):
            symbols = {sp.Symbol(k, real=True): v for k, v in self.hypers.items()}
            return float(value.subs(symbols))
        return float(value)

    def prepare(self, inputs: Mapping[str, torch.Tensor], key: Any = None) -> None:
        """p's parts for these rows (x, and index with views); kept while ``key`` is unchanged
        (a p of x alone is built once)."""
        if self.parts and (self.fixed or key == self.key):
            return
        self.key = key
        x = inputs["x"]
        if self.reverse:
            self.parts = self._gaussian_parts(x)
        else:
            self.parts = self._sparse_parts(x, inputs.get("index"))

    def loss(self, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The loss (the generated forward's; ``sampled``: an unbiased estimate, and for
        reverse_kl without the constant mean_i log Z_i)."""
        if self.normaliser == "sampled" and generator is None:
            raise ValueError("the sampled estimate needs a generator")
        v = pairs.without_underflow(v)
        if self.reverse:
            return self._reverse_kl(v, generator)
        return self._cross_entropy(v, generator)

    def score(self, v: torch.Tensor) -> float:
        """The loss with fixed draws (the same for every start): which start to keep."""
        generator = torch.Generator().manual_seed(SCORE_SEED)
        with torch.no_grad():
            return float(self.loss(v.detach(), generator))

    def _all_pairs(
        self,
        v: torch.Tensor,
        weight: torch.Tensor,
        fn: pairs.Fn,
        a: float,
        b: float,
        diagonal: bool,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        if self.normaliser == "exact":
            return pairs.blocked(v, weight, fn, a, b, diagonal, self.block)
        assert generator is not None
        return pairs.sampled(v, weight, fn, self.negatives, generator, a, b, diagonal)

    # -- reverse_kl against a gaussian p (kmeans) -----------------------------------------------
    def _gaussian_parts(self, x: torch.Tensor) -> dict[str, Any]:
        args = self.ir.args(self.ir.roots["p"])
        if "temperature" in args:
            width = 1 / (2 * self._num(args["temperature"]))
        else:
            width = 1 / (2 * self._num(args.get("sigma", 1.0)) ** 2)
        exact = x.double()
        centred = exact - exact.mean(0)  # distances are unchanged; the expansion cancels less
        return {
            "x": centred.to(x.dtype),
            "sq": (centred * centred).sum(1).to(x.dtype),
            "width": width,
            "log_z": _log_z(centred, width) if self.normaliser == "exact" else None,
        }

    def _reverse_kl(self, v: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x, sq = self.parts["x"].to(v.dtype), self.parts["sq"].to(v.dtype)
        mass = pairs.cluster_mass(v)
        centres = v.T @ x  # S_c = sum_j v_jc x_j
        spread = v.T @ sq  # T_c = sum_j v_jc |x_j|^2
        # sum_ij q_ij |x_i - x_j|^2 = sum_c (1 / n_c) sum_ij v_ic v_jc |x_i - x_j|^2
        #                           = 2 sum_c (T_c - |S_c|^2 / n_c), through the rank of q
        scatter = 2 * (spread - (centres * centres).sum(1) / mass).sum()
        total = self.parts["width"] * scatter
        log_z = self.parts["log_z"]
        if log_z is not None:  # sum_j q_ij log Z_i = (row sum of q_i) log Z_i
            row_sums = v @ (v.sum(0) / mass)
            total = total + (row_sums * log_z.to(v.dtype)).sum()
        weight = torch.ones(len(v), dtype=v.dtype, device=v.device)
        entropy = self._all_pairs(v, weight, pairs.entropy_terms, 1.0, 0.0, True, generator)
        return (total + entropy) / len(v)

    # -- kl against a sparse (debiased) p ------------------------------------------------------
    def _sparse_parts(self, x: torch.Tensor, index: torch.Tensor | None) -> dict[str, Any]:
        ir, p = self.ir, self.ir.roots["p"]
        alpha, inner = 0.0, p
        if ir.op(p) == "debias":
            alpha, inner = self._num(ir.args(p)["alpha"]), ir.children(p)[0]
        points = x.detach().cpu().numpy()
        built = sparse_p.build_p(ir, self.hypers, points, inner, index)
        kept = torch.ones(len(points), dtype=torch.bool)
        for node in ir.graph.nodes:  # rows of an augmentation without another view are out
            if ir.op(node) == "augmentation":
                part = sparse_p.build_p(ir, self.hypers, points, node, index)
                kept &= part.row_mass() > 0
        if not bool(kept.any()):
            raise ValueError("no row of p has another view of its sample: p is empty")
        diagonal = ir.dist_type(inner).diagonal
        count = int(kept.sum())
        support = len(points) if diagonal else len(points) - 1
        rows, cols = built.rows.to(x.device), built.cols.to(x.device)
        edge = -(1 - alpha) * built.values * kept[built.rows].double() / count
        uniform = -alpha / support * kept.double() / count
        return {
            "rows": rows,
            "cols": cols,
            "edge": edge.to(x.device),
            "uniform": uniform.to(x.device),
            "alpha": alpha,
            "diagonal": diagonal,
        }

    def _cross_entropy(self, v: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        parts, n = self.parts, len(v)
        a, b = 1 - self.q_alpha, self.q_alpha / n
        edge = parts["edge"].to(v.dtype)
        value, gradient = pairs.on_pairs(
            v.detach(), parts["rows"], parts["cols"], edge, pairs.log_terms, a, b
        )
        total = pairs.WithGradient.apply(v, value, gradient)
        if parts["alpha"] > 0:
            weight = parts["uniform"].to(v.dtype)
            total = total + self._all_pairs(
                v, weight, pairs.log_terms, a, b, parts["diagonal"], generator
            )
        return total  # type: ignore[no-any-return]


def _inputs_of(ir: IR, node: int) -> set[str]:
    """The input names p reads."""
    return {ir.args(n)["name"] for n in ir.subtree(node) if ir.op(n) == "input"}


@torch.no_grad()
def _log_z(x: torch.Tensor, width: float, block: int = LOG_Z_BLOCK) -> torch.Tensor:
    """log sum_j exp(-width |x_i - x_j|^2) per row, j = i included (float64, row blocks)."""
    norms = (x * x).sum(1)
    parts = []
    for start in range(0, len(x), block):
        rows = x[start : start + block]
        d2 = (norms[start : start + block, None] + norms[None, :]).addmm_(rows, x.T, alpha=-2)
        parts.append(torch.logsumexp(d2.clamp_min_(0).mul_(-width), dim=1))
    return torch.cat(parts)


def check_assignments(v: torch.Tensor) -> None:
    """ValueError unless v's rows are soft assignments (nonnegative, summing to 1)."""
    tolerance = 50 * torch.finfo(v.dtype).eps * v.shape[1]
    if bool((v < 0).any()) or bool(((v.sum(1) - 1).abs() > tolerance).any()):
        raise ValueError(
            "cluster() needs soft assignments: rows of f(x) nonnegative and summing to 1 "
            "(a mapper with softmax=true)"
        )


# -- predictions for `icon-dsl explain --batch N` ---------------------------------------------
CALIBRATION_ROWS = {"exact": (512, 2048), "sampled": (2048, 8192)}


def predict(
    ir: IR, n: int, mapper: torch.nn.Module | None = None, negatives: int = NEGATIVES
) -> dict[str, tuple[float, float]]:
    """Predicted (seconds per epoch and start, peak bytes of the loss) on n rows for each way of
    summing over pairs. Timed on CALIBRATION_ROWS random rows on this machine (the best of two
    after a warm-up) and scaled to n: the loss as a fixed cost plus a cost per pair (N^2 pairs
    for the exact row blocks, N m for the sampled sums); a p rebuilt on each epoch's views
    (an exact kNN search) as N^2. With ``mapper`` (the spec's, on 16 features) its forward and
    backward pass are timed with the loss. Memory counts float32 temporaries: about 4 blocks of
    BLOCK x N, or 6 N m."""
    out = {}
    for normaliser, sizes in CALIBRATION_ROWS.items():
        timed = [_time_epoch(ir, r, normaliser, negatives, mapper) for r in sizes]
        rebuild = timed[1][1] * (n / sizes[1]) ** 2
        if normaliser == "exact":
            count, memory = float(n) * n, 4.0 * 4 * min(n, pairs.BLOCK) * n
        else:
            count, memory = float(n) * negatives, 6.0 * 4 * n * negatives
        loss = scaled_time([(pairs_, seconds) for pairs_, _, seconds in timed], count)
        out[normaliser] = (rebuild + loss, memory)
    return out


def _time_epoch(
    ir: IR, n: int, normaliser: str, negatives: int, mapper: torch.nn.Module | None
) -> tuple[float, float, float]:
    """(pairs, seconds rebuilding p, seconds of the loss and backward) of an epoch on n random
    rows (p is rebuilt only for a spec whose p reads views)."""
    generator = torch.Generator().manual_seed(0)
    clusters = int(float(ir.args(ir.roots["mapper"]).get("dim", 10)))
    inputs = {"x": torch.rand(n, 16, generator=generator)}
    rebuilt = "index" in _inputs_of(ir, ir.roots["p"])
    if rebuilt:
        inputs["index"] = torch.arange(n) // 2  # two views of each sample
    logits = torch.randn(n, clusters, generator=generator, dtype=torch.float32)
    fixed_v = torch.softmax(logits, 1).requires_grad_()
    objective = ClusterObjective(ir, {}, normaliser, min(negatives, n - 1))
    builds, losses = [], []
    for attempt in range(3):  # the first is a warm-up
        started = time.perf_counter()
        objective.prepare(inputs, key=attempt)  # a p of views is rebuilt each epoch
        built = time.perf_counter()
        v = fixed_v if mapper is None else mapper(inputs["x"])
        objective.loss(v, generator).backward()
        builds.append(built - started)
        losses.append(time.perf_counter() - built)
    count = float(n) * n if normaliser == "exact" else float(n) * negatives
    return count, (min(builds[1:]) if rebuilt else 0.0), min(losses[1:])
