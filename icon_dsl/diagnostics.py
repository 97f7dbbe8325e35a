"""Diagnostics: every problem found in a spec, collected and reported at once.

Takes: problems found by the parser, the lowering and the checks, each with a stable code.
Guarantees: `render()` gives the format docs/errors.md shows (file:line:col, the source line,
carets, a help line); `SpecError` carries every error of a spec, so callers print them together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .source import Source, Span

Severity = Literal["error", "warning", "note"]

#: Every diagnostic code with a one-line meaning; docs/errors.md and the golden tests read this.
CODES: dict[str, str] = {
    "syntax": "the text is not a statement of the language",
    "duplicate-statement": "a statement (p, q, mapper, loss, method) is given twice",
    "missing-statement": "p, q or mapper is missing",
    "unknown-name": "a name that is neither a block, an input, a parameter nor a kernel",
    "unknown-statement": "an assignment to something other than p, q, mapper or loss",
    "arity": "too many or too few positional arguments",
    "unknown-keyword": "a keyword argument the block does not take",
    "duplicate-argument": "an argument given twice",
    "bad-argument": "an argument of the wrong kind (a distribution where a number is needed, ...)",
    "domain": "a parameter value outside its domain (sigma <= 0, alpha > 1, ...)",
    "conflicting-arguments": "two arguments that cannot be given together",
    "shape-mismatch": "p and q are over different supports (N x N against N x n, or different n)",
    "diagonal-mismatch": "p and q disagree on whether j = i is in the support",
    "infinite-divergence": "a divergence that is infinite by construction (reverse KL to a sparse p)",
    "joint-mismatch": "one side is jointly normalised (joint) and the other is not",
    "not-row-stochastic": "a distribution that is not provably row-stochastic",
    "mixture-weights": "mixture weights not provably nonnegative or not summing to 1",
    "kernel-not-nonnegative": "a user kernel sympy cannot prove nonnegative",
    "kernel-not-positive": "a user kernel in q that may be 0 (q would be 0, or 0 / 0 on a row)",
    "kernel-definition": "a malformed user kernel (its first argument must be d2, ...)",
    "not-learnable": "q does not depend on f(x) or prototypes",
    "p-depends-on-f": "p depends on the mapper's output f(x)",
    "not-differentiable": "a non-differentiable block used as q",
    "wrong-role": "a block used where another kind is needed (a mapper as p, ...)",
    "empty-rows": "rows of p may be empty; they are dropped from the mean and counted",
    "degenerate": "an objective that cannot learn: a uniform p, a loss with no minimiser "
    "(an identity p against a width f(x) absorbs), a table mapper given views",
    "file": "a spec file that cannot be read",
    "argument-order": "a positional argument after a keyword argument",
    "unused-param": "a declared param that nothing uses (often a typo in its use)",
    "spec-too-large": "a spec larger than the size limit (docs/security.md)",
    "too-many-statements": "more statements than the limit",
    "too-deep": "expressions nested deeper than the limit",
    "too-many-terms": "more mixture terms, union operands or call arguments than the limit",
    "number-size": "a number too long, too large or too small to hold exactly",
    "formula-too-large": "formulas with more operations on symbols than the limit",
    "normaliser": "a compiler --normaliser the spec's loss cannot take (row blocks need rows "
    "computed one by one)",
}


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    code: str
    message: str
    span: Span | None = None
    help: str | None = None

    def render(self, source: Source) -> str:
        if self.span is None:
            head = f"{source.name}: {self.severity}: {self.message}  [{self.code}]"
            return head + (f"\n  help: {self.help}" if self.help else "")
        line, col = source.line_col(self.span.start)
        head = f"{source.name}:{line}:{col}: {self.severity}: {self.message}  [{self.code}]"
        parts = [head, source.render_caret(self.span)]
        if self.help:
            parts.append(f"  help: {self.help}")
        return "\n".join(parts)


@dataclass
class Diagnostics:
    """A collector: stages add to it; `raise_if_errors` raises them all at once."""

    source: Source
    items: list[Diagnostic] = field(default_factory=list)
    _seen: set[Diagnostic] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self._seen.update(self.items)

    def error(
        self, code: str, message: str, span: Span | None = None, help: str | None = None
    ) -> None:
        self._add("error", code, message, span, help)

    def warning(
        self, code: str, message: str, span: Span | None = None, help: str | None = None
    ) -> None:
        self._add("warning", code, message, span, help)

    def note(
        self, code: str, message: str, span: Span | None = None, help: str | None = None
    ) -> None:
        self._add("note", code, message, span, help)

    def _add(
        self, severity: Severity, code: str, message: str, span: Span | None, help: str | None
    ) -> None:
        assert code in CODES, f"unregistered diagnostic code {code!r}"
        diag = Diagnostic(severity, code, message, span, help)
        if diag not in self._seen:  # a set: a spec may have thousands of diagnostics
            self._seen.add(diag)
            self.items.append(diag)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    def render(self) -> str:
        ordered = sorted(self.items, key=lambda d: d.span.start if d.span else -1)
        return "\n".join(d.render(self.source) for d in ordered)

    def raise_if_errors(self) -> None:
        if self.errors:
            raise SpecError(self.source, list(self.items))


class SpecError(Exception):
    """A spec with errors. `str()` is the rendered report of every diagnostic."""

    def __init__(self, source: Source, diagnostics: list[Diagnostic]) -> None:
        self.source = source
        self.diagnostics = diagnostics
        super().__init__(Diagnostics(source, diagnostics).render())

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.diagnostics if d.severity == "error"]
