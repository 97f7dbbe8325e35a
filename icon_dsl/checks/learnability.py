"""Learnability: q must depend on the mapper, p must not, and q must be differentiable.

Guarantees: errors for a q with nothing to learn, a p built from f(x), and a non-differentiable
block (knn, label, ...) applied to f(x); a note when rows of p may be empty.
"""

from __future__ import annotations

from .. import registry as reg
from ..diagnostics import Diagnostics
from ..ir import IR, DistType


def check(ir: IR, diags: Diagnostics) -> None:
    p_node, q_node = ir.roots["p"], ir.roots["q"]
    p, q = ir.dist_type(p_node), ir.dist_type(q_node)
    if not q.learned:
        diags.error(
            "not-learnable",
            "q does not depend on f(x) or prototypes, so there is nothing to learn",
            ir.span(q_node),
            "build q from the mapper's output, e.g. gaussian(f(x))",
        )
    if p.learned:
        diags.error(
            "p-depends-on-f",
            "p depends on f(x); the supervisory distribution must come from the data",
            ir.span(p_node),
            "build p from x, y or index",
        )
    for node in ir.subtree(q_node):
        block = reg.BLOCKS.get(ir.op(node))
        t = ir.type(node)
        if block and isinstance(t, DistType) and t.learned and not block.differentiable:
            diags.error(
                "not-differentiable",
                f"{block.name}() is not differentiable, so it cannot carry the gradient of q",
                ir.span(node),
                "use it in p, and a smooth kernel (gaussian, student_t) in q",
            )
    if p.may_be_empty:
        diags.note(
            "empty-rows",
            "rows of p may be empty (a label or sample seen once in a batch); "
            "they are left out of the mean and counted",
            ir.span(p_node),
        )
