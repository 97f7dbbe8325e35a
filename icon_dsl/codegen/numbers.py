"""Numbers and sympy expressions as the generated module's Python.

Takes: sympy numbers, hyperparameter expressions and kernel formulas. Guarantees: finite Python
literals (never `nan`, `inf` nor a 300-digit integer: NotFinite otherwise, which `refuse` turns
into a located `domain` error), spacing as ruff formats it, hyperparameters as `self.<name>`.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any, NoReturn

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from ..diagnostics import Diagnostics, SpecError
from ..ir import IR
from ..source import Span
from .printing import TorchCodePrinter


def python_expr(code: str, bracket: bool = True) -> str:
    """Normalised Python for an expression (spacing as ruff formats it), bracketed unless atomic
    (or unless bracket is False)."""
    tree = ast.parse(code, mode="eval").body
    # ruff hugs ** between simple operands (names, attributes, numbers): self.t**2
    text = re.sub(
        r"(?<![\w.)\]])([A-Za-z_][\w.]*|\d[\d.]*) \*\* ([A-Za-z_][\w.]*|\d[\d.]*)(?![\w.(\[])",
        r"\1**\2",
        ast.unparse(tree),
    )
    atomic = isinstance(tree, (ast.Name, ast.Attribute, ast.Constant, ast.Call))
    return text if atomic or not bracket else f"({text})"


class NotFinite(ValueError):
    """A number the generated module would have to hold is not a finite float64."""


def number_literal(value: Any) -> str:
    """A Python literal for a number: an int while float64 holds it exactly (|n| <= 2**53),
    else the float's repr (which round-trips); never `nan`, `inf` nor a 300-digit integer.

    Raises NotFinite for a value beyond float64 (1e308 * 10) or not a real number: check
    refuses those, this keeps emission honest if one slips through."""
    number = sp.sympify(value)
    if number.is_Integer and abs(int(number)) <= 2**53:
        return str(int(number))
    try:
        as_float = float(number)
    except OverflowError:
        as_float = math.inf
    except (TypeError, ValueError):
        raise NotFinite(f"{number} is not a real number") from None
    if not math.isfinite(as_float):
        shown = sp.N(number, 3)
        raise NotFinite(f"{shown} is beyond the range of a float64 (about 1.8e308)")
    return repr(as_float)


def refuse(ir: IR, span: Span | None, error: NotFinite) -> NoReturn:
    """A located `domain` error for a number the module cannot hold."""
    diags = Diagnostics(ir.source)
    diags.error("domain", f"a number here cannot be held by the generated module: {error}", span)
    raise SpecError(ir.source, diags.items)


class _Numbers:
    """Numbers as finite Python literals (number_literal); a fraction of exact integers stays
    `p/q`; nan and infinities raise NotFinite."""

    def _print_Integer(self, expr: sp.Integer) -> str:
        return number_literal(expr)

    def _print_Float(self, expr: sp.Float) -> str:
        return number_literal(expr)

    def _print_Rational(self, expr: sp.Rational) -> str:
        if abs(expr.p) <= 2**53 and expr.q <= 2**53:
            return f"{expr.p}/{expr.q}"  # exact in Python: a float division of two exact ints
        return number_literal(expr)

    def _print_NaN(self, expr: sp.Expr) -> str:
        raise NotFinite("the formula is undefined (nan)")

    _print_Infinity = _print_NegativeInfinity = _print_ComplexInfinity = _print_NaN


class KernelPrinter(_Numbers, TorchCodePrinter):
    """Torch code for a kernel formula; powers as `**` so float hyperparameters work too, and
    log(1 + x) as log1p(x) (exact for small x). Numbers print as finite literals."""

    def _print_log(self, expr: sp.log) -> str:
        arg = expr.args[0]
        if isinstance(arg, sp.Add) and sp.S.One in arg.args:
            return f"torch.log1p({self._print(arg - 1)})"
        return f"torch.log({self._print(arg)})"

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        if exp == sp.Rational(1, 2):
            return f"torch.sqrt({self._print(base)})"
        if exp == -1:
            return f"1 / ({self._print(base)})"
        return f"({self._print(base)}) ** ({self._print(exp)})"


class ConstantPrinter(_Numbers, PythonCodePrinter):
    """A kernel's parts without d2 (hyperparameters and numbers): Python floats, so math.log,
    math.exp and math.sqrt rather than torch's functions, which need tensors."""


class NumPrinter(_Numbers, PythonCodePrinter):
    """Hyperparameter expressions as Python: symbols become `self.<name>`, floats their repr."""

    def __init__(self, hyper_names: dict[str, str], prefix: str = "self.") -> None:
        super().__init__()
        self.hyper_names = hyper_names
        self.prefix = prefix

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return f"{self.prefix}{self.hyper_names[expr.name]}"
