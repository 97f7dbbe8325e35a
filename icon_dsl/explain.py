"""`icon-dsl explain`: the objective as formulas, its periodic-table cell and known name.

Takes: a spec. Guarantees: text for a reader; the cell comes from the registry's families of p and
q, the name from structural recognition (known.py), never from the file name.
"""

from __future__ import annotations

from pathlib import Path

from .api import check
from .codegen.emit import formulas
from .ir import IR
from .known import recognise
from .source import Source

#: Periodic-table column (p) and row (q) labels, by registry family.
P_COLUMNS = {
    "gaussian": "Gaussian",
    "student_t": "Student-t",
    "identity": "identity",
    "knn": "uniform kNN",
    "augmentation": "same sample",
    "label": "same label",
    "classes": "class one-hot",
    "uniform": "uniform",
}
Q_ROWS = {"gaussian": "Gaussian", "student_t": "Student-t", "cluster": "cluster"}


def _family(ir: IR, node: int) -> str:
    """The family of a distribution, looking through modifiers (debias, normalize)."""
    op = ir.op(node)
    if op in ("debias", "normalize") and ir.children(node):
        return _family(ir, ir.children(node)[0])
    if op == "kernel":
        return str(ir.args(node)["kernel"])
    return op


def cell(ir: IR) -> tuple[str, str]:
    p = _family(ir, ir.roots["p"])
    q = _family(ir, ir.roots["q"])
    return P_COLUMNS.get(p, p), Q_ROWS.get(q, q)


def explain(spec: str | Path | Source) -> str:
    checked = check(spec)
    ir = checked.ir
    known = recognise(ir)
    p_col, q_row = cell(ir)
    lines = [f"method {ir.method}" + (f': "{ir.title}"' if ir.title else "")]
    lines.append(
        f"known as: {known.display} ({known.citation})" if known else "known as: - (a new method)"
    )
    lines.append(f"periodic-table cell: p column '{p_col}', q row '{q_row}'")
    lines.append("")
    lines += formulas(ir)
    if ir.hypers:
        lines.append("")
        lines.append("hyperparameters:")
        for h in sorted(ir.hypers.values(), key=lambda h: h.name):
            default = "required" if h.default is None else f"default {h.default:g}"
            lines.append(f"    {h.name}: {h.domain.describe(h.name)}, {default}")
    for note in checked.notes:
        lines.append("")
        lines.append(note.render(ir.source))
    return "\n".join(lines)
