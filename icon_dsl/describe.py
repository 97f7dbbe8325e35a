"""The objective written out for people: p, q and the loss as formulas.

Takes: a checked IR. Guarantees: the lines a generated module's docstring shows, which explain,
the generated docs and the enumeration's renderer show too (one wording for all of them).
"""

from __future__ import annotations

from . import registry as reg
from .ir import IR


def formulas(ir: IR) -> list[str]:
    """The objective written out: p, q and the loss."""
    lines = []
    for name in ("p", "q"):
        root = ir.roots[name]
        text = ir.text(root)
        block = reg.BLOCKS.get(ir.op(root))
        lines.append(f"{name} = {text}")
        if block is not None:
            lines.append(f"    {block.formula}")
        lines.append(f"    support: {ir.dist_type(root).describe_support()}")
    loss = reg.BLOCKS[ir.op(ir.roots["loss"])]
    lines.append(f"loss = {loss.name}(p, q)")
    lines.append(f"    {loss.formula}")
    return lines
