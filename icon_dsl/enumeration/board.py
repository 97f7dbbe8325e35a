"""The periodic table coloured by measured scores (HTML and PNG), from a leaderboard.

Takes: the candidates of a listing and the rows of `leaderboard.json`. Guarantees: one cell per
(p column, q row) of the table, folded to its known names and "N new", duplicates and degenerate
candidates counted; a cell with confirmed scores is coloured by its best row against its
column's best known method: green when the row's 95 % interval lies above the known method's,
red when it lies below, grey when they overlap; cells with no confirmed score stay white.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .render import _cells, _layout, cell_summary, column_label, row_label

COLOURS = {"above": "#bbf7d0", "below": "#fecaca", "overlap": "#e5e7eb", "none": "#ffffff"}


def _best_known(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["status"] == "known" and math.isfinite(r["mean"]):
            if r["column"] not in out or r["mean"] > out[r["column"]]["mean"]:
                out[r["column"]] = r
    return out


def cell_verdicts(
    cands: Sequence[Any], rows: Sequence[dict[str, Any]]
) -> dict[tuple[str, str], tuple[str, str]]:
    """(p, row) -> (verdict, text): the cell's best confirmed row against its column's best known."""
    by_name = {r["name"]: r for r in rows if r["status"] in ("known", "new")}
    best = _best_known(rows)
    out: dict[tuple[str, str], tuple[str, str]] = {}
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cands:
        if c.name in by_name:
            cells.setdefault((c.p, c.row), []).append(by_name[c.name])
    for key, scored in cells.items():
        top = max(scored, key=lambda r: r["mean"])
        ref = best.get(top["column"])
        text = f"{top['metric']} {top['mean']:.3f} [{top['ci_low']:.3f}, {top['ci_high']:.3f}]"
        if ref is None or not math.isfinite(top["ci_low"]) or not math.isfinite(ref["ci_high"]):
            out[key] = ("none", text)
        elif top["name"] == ref["name"] or not (
            top["ci_low"] > ref["ci_high"] or top["ci_high"] < ref["ci_low"]
        ):
            out[key] = ("overlap", text + f" vs best known {ref['mean']:.3f}")
        elif top["ci_low"] > ref["ci_high"]:
            out[key] = ("above", text + f" vs best known {ref['mean']:.3f}")
        else:
            out[key] = ("below", text + f" vs best known {ref['mean']:.3f}")
    return out


def render_scored_html(cands: Sequence[Any], rows: Sequence[dict[str, Any]], title: str) -> str:

    cols, qrows = _layout(cands)
    cells = _cells(cands)
    verdicts = cell_verdicts(cands, rows)
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{border:1px solid #bbb;padding:6px;vertical-align:top;font-size:13px}"
        "small{color:#444}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        "<p>Each cell: its known methods, N new, = N duplicates, ! N degenerate. Colour: the "
        "cell's best confirmed score against its column's best known method (green: 95 % "
        "interval above; red: below; grey: overlapping; white: not confirmed).</p>",
        "<table><tr><th>q \\ p</th>"
        + "".join(f"<th>{esc(column_label(p))}</th>" for p in cols)
        + "</tr>",
    ]
    for q in qrows:
        out.append(f"<tr><th>{esc(row_label(q))}</th>")
        for p in cols:
            parts = cell_summary(cells.get((p, q), [])).parts()
            verdict, text = verdicts.get((p, q), ("none", ""))
            body = "<br>".join(esc(x) for x in parts) or "-"
            if text:
                body += f"<br><small>{esc(text)}</small>"
            out.append(f'<td style="background:{COLOURS[verdict]}">{body}</td>')
        out.append("</tr>")
    out += ["</table>", "</body></html>"]
    return "\n".join(out) + "\n"


def render_scored_png(cands: Sequence[Any], rows: Sequence[dict[str, Any]], title: str,
                      path: Path) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols, qrows = _layout(cands)
    cells = _cells(cands)
    verdicts = cell_verdicts(cands, rows)
    fig, ax = plt.subplots(figsize=(1.9 * len(cols) + 2, 1.1 * len(qrows) + 1.5))
    for i, q in enumerate(qrows):
        for j, p in enumerate(cols):
            verdict, text = verdicts.get((p, q), ("none", ""))
            ax.add_patch(plt.Rectangle((j, -i - 1), 1, 1, facecolor=COLOURS[verdict],
                                       edgecolor="#999"))  # fmt: skip
            parts = cell_summary(cells.get((p, q), [])).parts()
            label = "\n".join([*parts[:3], text.split(" vs ")[0]] if text else parts[:4])
            ax.text(j + 0.5, -i - 0.5, label, ha="center", va="center", fontsize=5.5, wrap=True)
    ax.set_xlim(0, len(cols))
    ax.set_ylim(-len(qrows), 0)
    ax.set_xticks([j + 0.5 for j in range(len(cols))])
    ax.set_xticklabels([column_label(p) for p in cols], rotation=30, ha="left", fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([-i - 0.5 for i in range(len(qrows))])
    ax.set_yticklabels([row_label(q) for q in qrows], fontsize=7)
    ax.set_title(title, fontsize=9, pad=40)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def write_table(out: Path, cands: Sequence[Any], rows: Sequence[dict[str, Any]], name: str) -> None:
    """periodic-table.html and .png: the table coloured by the measured scores."""
    title = f"The periodic table on {name}: cells against their column's best known method"
    (out / "periodic-table.html").write_text(render_scored_html(cands, rows, title), "utf-8")
    render_scored_png(cands, rows, title, out / "periodic-table.png")
