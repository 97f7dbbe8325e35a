"""What lowering builds: a lowered node's value (`Val`) and the `_terms` body (`Body`).

Takes: lines and names from the node rules. Guarantees: fresh variable names never clash, the
kept-row tests stay compilable however many there are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import names
from .layout import fold


@dataclass
class Val:
    """A lowered node: its representation and the variable holding it."""

    # "tensor", "logits", "mask", "onehot", "prob", or "logprob" (log-probabilities per row,
    # or over the whole matrix after joint())
    kind: str
    var: str  # the value for this process's rows
    columns: str | None = None  # code for the number of columns of a onehot
    cols: str | None = None  # a data tensor's column side: the whole (gathered) batch


@dataclass
class Body:
    """Lines of the `_terms` method under construction."""

    lines: list[str] = field(default_factory=list)
    helpers: set[str] = field(default_factory=set)
    keeps: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    needs_diag: bool = False
    taken: set[str] = field(default_factory=set)
    # each perplexity search (its call as written, d2, perplexity): row blocks reuse its result
    calibrations: list[tuple[str, str, str]] = field(default_factory=list)

    def fresh(self, base: str) -> str:
        name, i = base, 2
        while name in self.taken:
            name, i = f"{base}{i}", i + 1
        self.taken.add(name)
        return name

    def add(self, line: str) -> None:
        self.lines.append(line)

    def fold_keeps(self, first: int, name: str) -> None:
        """The kept-row tests from `first` on as one variable when they would not fit on one
        line (a union of thousands of indicators: one `&` expression would not compile)."""
        keeps = self.keeps[first:]
        if len(all_of(keeps)) > 40:
            var = self.fresh(name)
            self.lines += fold(var, [operand(k) for k in keeps], "&")
            self.keeps[first:] = [var]

    def comment(self, text: str) -> None:
        self.lines.append(names.comment(text))


def operand(test: str) -> str:
    """A kept-row test as an operand of `&`, which binds tighter than `>`."""
    return f"({test})" if " " in test else test


def all_of(keeps: list[str]) -> str:
    """The kept-row tests joined with `&` (one test stays bare)."""
    return keeps[0] if len(keeps) == 1 else " & ".join(operand(k) for k in keeps)


def words(lines: list[str]) -> set[str]:
    """The identifiers (and dotted attributes such as self.sigma) that lines mention."""
    return set(re.findall(r"[A-Za-z_][\w.]*", "\n".join(lines)))
