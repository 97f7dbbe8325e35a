"""Degeneracy: objectives that check out but cannot learn anything (warning `degenerate`).

Guarantees: a warning with the reason and a help line for
- a p constant over j for every i (uniform, or a modifier of it, or a union holding it): the
  optimum is a q as flat as p, reached by collapsing the embedding; nothing about the data is used;
- an identity p against a kernel over f(x) whose width a rescaling absorbs (euclidean or dot
  distances on a mapper that can scale): the loss -log q(i|i) keeps falling as the embedding
  grows, so it has no minimiser without a constraint the language cannot state (PCA needs an
  orthonormal map);
- a table mapper asked for views (augmentation) or cross-modal pairs: a table has one free row
  per sample, so both views of a sample are one embedding and the pairs say nothing.
`degenerate_reasons(ir)` gives the same reasons as text (the enumeration reads them).
"""

from __future__ import annotations

from .. import registry as reg
from ..diagnostics import Diagnostics
from ..ir import IR
from ..scaling import scale_free_kernels

CODE = "degenerate"
_VIEW_BLOCKS = ("augmentation", "cross_modal")


def _constant_over_j(ir: IR, node: int) -> bool:
    op = ir.op(node)
    kids = ir.children(node)
    if op == "uniform":
        return True
    if op in ("debias", "walk", "joint"):
        return bool(kids) and _constant_over_j(ir, kids[0])
    if op == "union":
        return any(_constant_over_j(ir, k) for k in kids)
    if op == "mixture":
        return bool(kids) and all(_constant_over_j(ir, k) for k in kids)
    return False


def degenerate_reasons(ir: IR) -> list[tuple[str, str, int]]:
    """(reason, help, node) for each way the objective is degenerate; empty when it is not."""
    out: list[tuple[str, str, int]] = []
    p, q, mapper = ir.roots["p"], ir.roots["q"], ir.roots["mapper"]
    if _constant_over_j(ir, p):
        out.append((
            "p is constant over j for every i (uniform), so the optimum is a flat q: the "
            "embedding collapses and the data are never used",
            "give p some structure: neighbours (knn, gaussian), labels, views or a graph",
            p,
        ))  # fmt: skip
    if ir.op(p) == "identity" and scale_free_kernels(ir):
        out.append((
            "p is the identity and q's width is absorbed by a rescaling of f(x): -log q(i|i) "
            "keeps falling as the embedding grows, so the loss has no minimiser (unbounded "
            "without a constraint)",
            "use metric=cosine or an L2-normalised mapper (sphere=true), which bounds the scale",
            q,
        ))  # fmt: skip
    if not reg.BLOCKS[ir.op(mapper)].parametric:  # a row per sample: views share it
        used = sorted({ir.op(n) for n in ir.subtree(p) if ir.op(n) in _VIEW_BLOCKS})
        if used:
            out.append((
                f"a table mapper has one free row per sample, so the views {used[0]}() pairs "
                "are one embedding: the pairs are satisfied trivially and cannot train it",
                "use a parametric mapper (linear or mlp), which embeds each view",
                mapper,
            ))  # fmt: skip
    return out


def check(ir: IR, diags: Diagnostics) -> None:
    for reason, help_text, node in degenerate_reasons(ir):
        diags.warning(CODE, reason, ir.span(node), help_text)
