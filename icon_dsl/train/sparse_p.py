"""The sparse p of a neighbour embedding on large data (``sparse.py`` trains with it).

p is an edge list over the k nearest neighbours of each row: a perplexity row keeps its
k = min(N - 1, 3P) nearest neighbours and is calibrated to perplexity P on those distances; knn
rows are exact; walk multiplies the sparse matrices; joint symmetrises.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp
import torch

from icon_dsl.ir import IR
from icon_dsl.large_data import PERPLEXITY_NEIGHBOURS
from icon_dsl.train.neighbours import nearest_neighbours


@dataclass
class SparseP:
    """p as edges: p[rows[e], cols[e]] = values[e] (float64); joint: the values sum to 1 over
    the matrix, else each non-empty row sums to 1."""

    n: int
    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    joint: bool

    def row_mass(self) -> torch.Tensor:
        return torch.zeros(self.n, dtype=self.values.dtype).index_add_(0, self.rows, self.values)

    def dense(self) -> torch.Tensor:
        """The N x N matrix (for tests and small N only)."""
        out = torch.zeros(self.n, self.n, dtype=self.values.dtype)
        out[self.rows, self.cols] = self.values
        return out


# -- building p -------------------------------------------------------------------------------
def build_p(
    ir: IR,
    hypers: Mapping[str, float],
    x: np.ndarray,
    node: int | None = None,
    index: torch.Tensor | None = None,
) -> SparseP:
    """p of the spec on x, sparse (see the module docstring); ``node``: a part of p instead
    (the clustering path builds the inside of a debias so), ``index``: the sample of each row
    for ``augmentation(index)`` (the other views of a row's sample)."""
    values = {name: h.default for name, h in ir.hypers.items() if h.default is not None}
    values.update(hypers)
    builder = _Builder(ir, values, x, index)
    root = ir.roots["p"] if node is None else node
    matrix = builder.matrix(root)
    joint = ir.op(root) == "joint"
    matrix = matrix.coalesce()
    rows, cols = matrix.indices()
    return SparseP(len(x), rows, cols, matrix.values(), joint)


class _Builder:
    def __init__(
        self,
        ir: IR,
        hypers: Mapping[str, float],
        x: np.ndarray,
        index: torch.Tensor | None = None,
    ) -> None:
        self.ir, self.hypers, self.x, self.index = ir, hypers, x, index
        self.n = len(x)
        self.found: tuple[torch.Tensor, torch.Tensor] | None = None  # the widest search so far

    def num(self, value: Any) -> float:
        if isinstance(value, sp.Basic):
            symbols = {sp.Symbol(k, real=True): v for k, v in self.hypers.items()}
            return float(value.subs(symbols))
        return float(value)

    def neighbours(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.found is None or self.found[0].shape[1] < k:
            self.found = nearest_neighbours(self.x, k)
        ids, d2 = self.found
        return ids[:, :k], d2[:, :k]

    def matrix(self, node: int) -> torch.Tensor:
        op, args, kids = self.ir.op(node), self.ir.args(node), self.ir.children(node)
        if op == "gaussian":
            perplexity = self.num(args["perplexity"])
            k = min(self.n - 1, int(PERPLEXITY_NEIGHBOURS * perplexity))
            if not 1 <= perplexity < k + 1:
                raise ValueError(f"perplexity {perplexity} needs more than {k + 1} points")
            ids, d2 = self.neighbours(k)
            weights = perplexity_rows(d2, perplexity)
            return self._coo(ids, weights)
        if op == "knn":
            k = int(self.num(args["k"]))
            ids, _ = self.neighbours(k)
            return self._coo(ids, torch.full(ids.shape, 1.0 / k, dtype=torch.float64))
        if op == "walk":
            step = inner = self.matrix(kids[0]).coalesce()
            total = inner
            for _ in range(int(self.num(args["steps"]))):
                with warnings.catch_warnings():  # torch calls its sparse support beta
                    warnings.simplefilter("ignore", UserWarning)
                    step = torch.sparse.mm(step, inner)
                total = (total + step).coalesce()
            if not self.ir.dist_type(node).diagonal:
                rows, cols = total.indices()
                off = rows != cols
                total = torch.sparse_coo_tensor(
                    total.indices()[:, off],
                    total.values()[off],
                    total.shape,
                    check_invariants=False,
                )
            return _row_normalised(total.coalesce())
        if op == "joint":
            inner = self.matrix(kids[0]).coalesce()
            return ((inner + inner.t()) / (2 * self.n)).coalesce()
        if op == "augmentation":
            return self._same_sample()
        if op == "union":  # uniform over the union of the supports
            total = sum((self.matrix(kid) for kid in kids[1:]), self.matrix(kids[0])).coalesce()
            ones = torch.ones_like(total.values())
            return _row_normalised(_coo(total.indices(), ones, self.n))
        raise ValueError(f"no sparse p for {op}")  # large_data.sparse_p_reason rules this out

    def _same_sample(self) -> torch.Tensor:
        """augmentation(index): uniform over the other rows of the same sample (rows without
        one stay empty)."""
        if self.index is None:
            raise ValueError("augmentation(index) needs the sample index of every row")
        index = self.index.cpu()
        order = torch.argsort(index, stable=True)
        ordered = index[order]
        pairs = []
        for gap in range(1, self.n):  # rows of one sample are consecutive in ``order``
            same = ordered[gap:] == ordered[:-gap]
            if not bool(same.any()):
                break
            a, b = order[:-gap][same], order[gap:][same]
            pairs += [torch.stack([a, b]), torch.stack([b, a])]
        indices = torch.cat(pairs, 1) if pairs else torch.zeros(2, 0, dtype=torch.long)
        ones = torch.ones(indices.shape[1], dtype=torch.float64)
        return _row_normalised(_coo(indices, ones, self.n))

    def _coo(self, ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(self.n).repeat_interleave(ids.shape[1])
        indices = torch.stack([rows, ids.reshape(-1)])
        return torch.sparse_coo_tensor(
            indices, values.reshape(-1), (self.n, self.n), check_invariants=False
        )


def _coo(indices: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    return torch.sparse_coo_tensor(indices, values, (n, n), check_invariants=False).coalesce()


def _row_normalised(matrix: torch.Tensor) -> torch.Tensor:
    rows, _ = matrix.indices()
    mass = torch.zeros(matrix.shape[0], dtype=matrix.dtype).index_add_(0, rows, matrix.values())
    values = matrix.values() / mass[rows]
    out = torch.sparse_coo_tensor(matrix.indices(), values, matrix.shape, check_invariants=False)
    return out.coalesce()


@torch.no_grad()
def perplexity_rows(d2: torch.Tensor, perplexity: float) -> torch.Tensor:
    """Rows softmax(-beta_i d2_i) with the entropy of each equal to log(perplexity), float64.

    Newton steps on log beta (dH / dlog beta = -beta^2 Var(d2)) inside a bisection bracket,
    until every row's entropy is within 1e-10 of the target; each step works on the rows not yet
    there only (a handful of rows take most of the steps).
    """
    d = d2.double() - d2.double().min(1, keepdim=True).values
    target = math.log(perplexity)
    log_beta = -torch.log(d.mean(1).clamp_min(1e-300))
    lo = torch.full_like(log_beta, -60.0)
    hi = torch.full_like(log_beta, 60.0)
    active = torch.arange(len(d))
    for _ in range(200):
        rows, b = d[active], log_beta[active]
        beta = b.exp()[:, None]
        w = torch.exp(-beta * rows)
        mass = w.sum(1)
        mean = (w * rows).sum(1) / mass
        variance = ((w * rows * rows).sum(1) / mass - mean**2).clamp_min(0)
        gap = torch.log(mass) + beta[:, 0] * mean - target  # > 0: too flat, beta must grow
        open_ = gap.abs() >= 1e-10
        if not bool(open_.any()):
            break
        active, b, gap = active[open_], b[open_], gap[open_]
        low = torch.where(gap > 0, b, lo[active])
        high = torch.where(gap > 0, hi[active], b)
        slope = (beta[open_, 0] ** 2) * variance[open_]
        newton = b + gap / slope.clamp_min(1e-300)
        # near the root Newton may land a rounding error past the bracket: clamp it back
        inside = (newton > low - 1e-6) & (newton < high + 1e-6) & (slope > 0)
        newton = torch.minimum(torch.maximum(newton, low), high)
        lo[active], hi[active] = low, high
        log_beta[active] = torch.where(inside, newton, (low + high) / 2)
    w = torch.exp(-log_beta.exp()[:, None] * d)
    return w / w.sum(1, keepdim=True)


def neighbours_per_row(ir: IR, hypers: Mapping[str, float] | None = None) -> int:
    """The widest neighbour search p's rows need (3P for perplexity P, k for knn)."""
    values = {name: h.default for name, h in ir.hypers.items() if h.default is not None}
    values.update(hypers or {})
    builder = _Builder(ir, values, np.zeros((2, 1)))
    widest = 1
    for node in ir.graph.nodes:
        op, args = ir.op(node), ir.args(node)
        if op == "gaussian" and "perplexity" in args:
            widest = max(widest, int(PERPLEXITY_NEIGHBOURS * builder.num(args["perplexity"])))
        elif op == "knn":
            widest = max(widest, int(builder.num(args["k"])))
    return widest
