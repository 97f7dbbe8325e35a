"""Rendering the table: terminal, markdown, JSON and HTML views of a list of candidates (stage 4).

Guarantees: every renderer is a pure function of the candidates (byte-identical across runs);
cells fold to their known names and "N new", with duplicates and degenerate candidates counted
apart; the HTML page is standalone (no scripts, no external files).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..api import check
from ..describe import formulas
from ..explain import P_COLUMNS, Q_ROWS
from .candidates import STATUSES, Candidate
from .space import p_families, q_families

_CELL_WIDTH = 16


def column_label(family: str) -> str:
    """The periodic-table column name of a p family (explain.py's labels, else the family)."""
    return P_COLUMNS.get(family, family.replace("_", " "))


def row_label(row: str) -> str:
    """The periodic-table row name of a q family, with its limit regime: `Gaussian sigma->0`."""
    family, _, regime = row.partition(" ")
    label = Q_ROWS.get(family, family.replace("_", " "))
    return f"{label} {regime}" if regime else label


def _layout(cands: Sequence[Candidate]) -> tuple[list[str], list[str]]:
    """The p columns and q rows that hold candidates, in registry order."""
    p_order = {f: i for i, f in enumerate(p_families())}
    q_order = {f: i for i, f in enumerate(q_families())}
    regimes = {"": 0, "sigma->inf": 1, "sigma->0": 2}
    cols = sorted({c.p for c in cands}, key=lambda f: (p_order.get(f, len(p_order)), f))
    rows = sorted(
        {(c.q, c.regime) for c in cands},
        key=lambda r: (q_order.get(r[0], len(q_order)), r[0], regimes.get(r[1], 3), r[1]),
    )
    return cols, [f"{q} {regime}" if regime else q for q, regime in rows]


@dataclass(frozen=True)
class CellSummary:
    """What a cell folds to: known names, and how many new, duplicate, degenerate candidates."""

    names: list[str]
    new: int
    duplicate: int
    degenerate: int
    all_rejected: bool

    def parts(self, bold: bool = False) -> list[str]:
        new = f"**{self.new} new**" if bold else f"* {self.new} new"
        out = list(self.names) + ([new] if self.new else [])
        out += [f"= {self.duplicate} dup"] if self.duplicate else []
        out += [f"! {self.degenerate} degenerate"] if self.degenerate else []
        return out + (["x"] if self.all_rejected else [])


def cell_summary(cell: Sequence[Candidate]) -> CellSummary:
    """The known names of a cell's kept records in order, and the other counts."""
    names = list(dict.fromkeys(c.known_as for c in cell if c.known_as and c.status == "known"))
    return CellSummary(
        names,
        sum(c.status == "new" for c in cell),
        sum(c.status == "duplicate" for c in cell),
        sum(c.status == "degenerate" for c in cell),
        bool(cell) and all(c.status == "rejected" for c in cell),
    )


def counts_line(cands: Sequence[Candidate]) -> str:
    counts = {s: sum(c.status == s for c in cands) for s in STATUSES}
    shown = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s] or s in ("known", "new"))
    return f"{len(cands)} candidates: {shown}."


def _cells(cands: Sequence[Candidate]) -> dict[tuple[str, str], list[Candidate]]:
    out: dict[tuple[str, str], list[Candidate]] = {}
    for c in cands:
        out.setdefault((c.p, c.row), []).append(c)
    return out


def render_table(cands: Sequence[Candidate]) -> str:
    """A terminal table laid out like the paper's figure: q rows, p columns, names in cells."""
    import textwrap

    cols, rows = _layout(cands)
    cells = _cells(cands)
    grid: list[list[list[str]]] = []
    for q in rows:
        line: list[list[str]] = [[row_label(q)]]
        for p in cols:
            summary = cell_summary(cells.get((p, q), []))
            text: list[str] = []
            for name in summary.names:
                text += textwrap.wrap(name, _CELL_WIDTH)
            text += summary.parts()[len(summary.names) :]
            line.append(text or ["."])
        grid.append(line)
    header = [["q \\ p"]] + [textwrap.wrap(column_label(p), _CELL_WIDTH) for p in cols]
    widths = [max(len(s) for r in [header, *grid] for s in r[i]) for i in range(len(cols) + 1)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [sep, *_table_row(header, widths), sep.replace("-", "=")]
    for line in grid:
        out += _table_row(line, widths)
        out.append(sep)
    out.append(
        counts_line(cands)
        + "  * N new: candidates no one has named;  = N dup: the same objective as a kept one up"
        + " to a rescaling;  ! N degenerate: cannot learn;  x: every candidate rejected;  .: none."
        + "  Details: --format json"
    )
    return "\n".join(out) + "\n"


def _table_row(cells: list[list[str]], widths: list[int]) -> list[str]:
    height = max(len(c) for c in cells)
    return [
        "| " + " | ".join(
            (c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths, strict=True)
        ) + " |"
        for k in range(height)
    ]  # fmt: skip


def one_line(spec: str) -> str:
    """The spec as one line (statements joined by `;`), without its `method` line."""
    stmts = [s for s in spec.splitlines() if s.strip() and not s.startswith(("method ", "#"))]
    return "; ".join(stmts)


GENERATED_BY = "icon-dsl enumerate --format {fmt} --output docs/periodic-table.{ext}"


def render_markdown(cands: Sequence[Candidate], command: str | None = None) -> str:
    cols, rows = _layout(cands)
    cells = _cells(cands)
    cmd = command or GENERATED_BY.format(fmt="markdown", ext="md")
    out = [
        "# The periodic table of I-Con methods",
        "",
        f"Generated by `{cmd}`; do not edit by hand.",
        "Columns are p (the supervisory distribution), rows are q (the learned one). A cell lists",
        "the known methods it holds and how many new candidates (**N new**) the checks accept;",
        "every candidate is listed below with its spec.",
        "",
        "| q \\ p | " + " | ".join(column_label(p) for p in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for q in rows:
        line = [f"**{row_label(q)}**"]
        for p in cols:
            line.append("<br>".join(cell_summary(cells.get((p, q), [])).parts(bold=True)) or "-")
        out.append("| " + " | ".join(line) + " |")
    out += [
        "",
        counts_line(cands),
        "",
        "## Candidates",
        "",
        "| p | q | name | status | spec |",
        "|---|---|---|---|---|",
    ]
    for c in cands:
        status = status_text(c)
        out.append(
            f"| {column_label(c.p)} | {row_label(c.row)} | `{c.name}` | {status} | "
            f"`{one_line(c.spec)}` |"
        )
    return "\n".join(out) + "\n"


def status_text(c: Candidate) -> str:
    """A candidate's status for a table: known name, new, or the reason it is set aside."""
    if c.status == "known":
        return f"known: {c.known_as}"
    if c.status == "duplicate":
        return f"duplicate of `{c.same_as[0]}`" if c.same_as else "duplicate"
    if c.status in ("degenerate", "rejected"):
        named = f" ({c.known_as})" if c.known_as else ""
        return f"{c.status}{named}: {c.reason}"
    same = f" (same as {', '.join(c.same_as)})" if c.same_as else ""
    return f"new{same}"


def render_json(cands: Sequence[Candidate]) -> str:
    return json.dumps([c.record() for c in cands], indent=2) + "\n"


_HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #bbb; padding: 6px; vertical-align: top; }
th { background: #f0f0f0; }
td.empty { background: #fafafa; color: #aaa; text-align: center; }
details { margin: 2px 0; }
summary { cursor: pointer; white-space: nowrap; }
.known summary { font-weight: bold; color: #14532d; }
.new summary { color: #1e3a8a; }
.rejected summary { color: #991b1b; }
.duplicate summary { color: #6b7280; }
.degenerate summary { color: #92400e; }
pre { background: #f7f7f7; padding: 4px; font-size: 11px; max-width: 40em; overflow-x: auto; }
"""


def render_html(cands: Sequence[Candidate], command: str | None = None) -> str:
    """A standalone page: the table, each cell listing its candidates with spec and formula."""
    cols, rows = _layout(cands)
    cells = _cells(cands)
    cmd = command or GENERATED_BY.format(fmt="html", ext="html")
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>The periodic table of I-Con methods</title>",
        f"<style>{_HTML_STYLE}</style></head><body>",
        "<h1>The periodic table of I-Con methods</h1>",
        f"<p>Generated by <code>{esc(cmd)}</code>. Columns are p, rows are q; open a",
        "candidate to see its spec and its objective as formulas. Known methods are in bold,",
        "new candidates in blue, duplicates (the same objective as a kept one up to a",
        "rescaling of f(x)) in grey, degenerate ones in brown, rejected ones in red.</p>",
        "<table><tr><th>q \\ p</th>"
        + "".join(f"<th>{esc(column_label(p))}</th>" for p in cols)
        + "</tr>",
    ]
    for q in rows:
        out.append(f"<tr><th>{esc(row_label(q))}</th>")
        for p in cols:
            cell = cells.get((p, q), [])
            if not cell:
                out.append('<td class="empty">-</td>')
                continue
            out.append("<td>" + "".join(_html_candidate(c) for c in cell) + "</td>")
        out.append("</tr>")
    out += ["</table>", "</body></html>"]
    return "\n".join(out) + "\n"


def _html_candidate(c: Candidate) -> str:
    esc = html.escape
    label = {
        "known": f"{c.known_as}",
        "new": f"new: {c.name}",
    }.get(c.status, f"{c.status}: {c.name}")
    detail = f"<pre>{esc(c.spec)}</pre>"
    if c.status in ("known", "new"):
        detail += f"<pre>{esc(candidate_formulas(c))}</pre>"
    else:
        detail += f"<pre>{esc(status_text(c))}</pre>"
    if c.limit:
        detail += f"<pre>{esc('limit: ' + c.limit)}</pre>"
    return f'<details class="{c.status}"><summary>{esc(label)}</summary>{detail}</details>'


def candidate_formulas(c: Candidate) -> str:
    """The objective as formulas (codegen's docstring text) for an accepted candidate."""
    return "\n".join(formulas(check(c.spec).ir))


RENDERERS: dict[str, Callable[[Sequence[Candidate]], str]] = {
    "table": render_table,
    "markdown": render_markdown,
    "json": render_json,
    "html": render_html,
}
