"""Name helpers shared by the lowering layers: suggestions and calls written as bare names."""

from __future__ import annotations

import difflib

from .. import syntax as s


def did_you_mean(name: str, candidates: list[str]) -> str | None:
    """A help line naming the closest candidate, or None when none is close."""
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else None


def as_call(expr: s.Expr) -> s.Call | None:
    """`expr` as a call: a bare name is a call without arguments (`mapper = table`)."""
    if isinstance(expr, s.Call):
        return expr
    if isinstance(expr, s.Name):
        return s.Call(expr, (), (), expr.span)
    return None
