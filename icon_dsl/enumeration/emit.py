"""Emitting candidates as `.icon` files that compile on their own (stage 5).

Guarantees: `emit_specs` writes each NEW candidate as `<dir>/<name>.icon`, a comment naming its
cell, then the spec; duplicates, degenerate and rejected candidates are not written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .candidates import Candidate
from .render import column_label, row_label


def spec_file_text(c: Candidate) -> str:
    """A `.icon` file for a candidate: a comment naming its cell, then the spec."""
    head = (
        f"# {c.status} candidate from `icon-dsl enumerate`: p column '{column_label(c.p)}', "
        f"q row '{row_label(c.row)}', {c.mapper} mapper, {c.divergence}"
    )
    if c.known_as:
        head += f" (known as {c.known_as})"
    return head + "\n" + c.spec


def emit_specs(cands: Iterable[Candidate], directory: str | Any) -> list[Any]:
    """Write each NEW candidate as `<directory>/<name>.icon`; returns the paths written."""
    from pathlib import Path

    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in cands:
        if c.status != "new":
            continue
        path = out_dir / f"{c.name}.icon"
        path.write_text(spec_file_text(c), encoding="utf-8")
        paths.append(path)
    return paths
