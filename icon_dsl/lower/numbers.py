"""Numbers and expressions of hyperparameters as sympy, with their sizes bounded."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import sympy as sp

from .. import limits
from .. import registry as reg
from .. import syntax as s
from ..ir import Hyper
from ..registry import Arg
from ..source import Span
from .base import LowererBase


class NumberLowerer(LowererBase):
    """Numbers, hyperparameters and the limits on the symbolic work they cause."""

    def _shallow(self, expr: s.Expr) -> bool:
        """Is a formula of symbols nested at most MAX_FORMULA_DEPTH deep? False after an error:
        sympy's proofs and derivatives grow exponentially with the nesting of powers and
        functions ((((d2 + 1)^2 + 1)^2 ...) is a polynomial of degree 2^depth)."""
        depth = formula_depth(expr)
        if depth <= limits.MAX_FORMULA_DEPTH:
            return True
        self.diags.error(
            "formula-too-large",
            f"this formula is nested {depth} deep, more than the limit of "
            f"{limits.MAX_FORMULA_DEPTH} for formulas of symbols",
            getattr(expr, "span", None),
            "write it flatter: the checker proves properties of each formula",
        )
        return False

    def _number(self, expr: s.Expr, allow_hypers: bool = True) -> sp.Expr | None:
        """A number or an expression of hyperparameters as sympy, or None after an error."""
        if allow_hypers and has_name(expr) and not self._shallow(expr):
            return None
        return self._number_in(expr, allow_hypers)

    def _number_in(self, expr: s.Expr, allow_hypers: bool) -> sp.Expr | None:
        if isinstance(expr, s.Number):
            # the literal's exact value: 0.6 + 0.3 + 0.1 sums to 1 in a mixture proof
            return sp.Rational(expr.text) if expr.text else sp.Rational(expr.value)
        if isinstance(expr, s.Neg):
            inner = self._number_in(expr.operand, allow_hypers)
            if inner is None or (inner.free_symbols and not self._count_operation(expr)):
                return None
            return -inner
        if isinstance(expr, s.BinOp):
            left = self._number_in(expr.left, allow_hypers)
            right = self._number_in(expr.right, allow_hypers)
            if left is None or right is None:
                return None
            return self._combine(expr, left, right)
        if isinstance(expr, s.Name) and allow_hypers:
            if expr.id in reg.known_names() or expr.id in self.ir.kernels:
                self.diags.error(
                    "bad-argument",
                    f"expected a number or a hyperparameter, got `{expr.id}`",
                    expr.span,
                )
                return None
            self.used.setdefault(expr.id, expr.span)
            return sp.Symbol(expr.id, real=True)
        span = getattr(expr, "span", None)
        self.diags.error("bad-argument", "expected a number", span)
        return None

    def _combine(self, expr: s.BinOp, left: sp.Expr, right: sp.Expr) -> sp.Expr | None:
        """`left op right`, or None after a located error: a power whose size is out of bounds
        is refused before sympy computes it (10^10^10 has ten billion digits)."""
        if (left.free_symbols or right.free_symbols) and not self._count_operation(expr):
            return None
        if expr.op == "^" and left.is_number and right.is_number:
            problem = power_problem(left, right)
            if problem is not None:
                self.diags.error("number-size", problem, expr.span, limits.NUMBER_HELP)
                return None
        return self._checked(arith(expr.op, left, right), expr)

    def _count_operation(self, expr: s.Expr) -> bool:
        """Count one sympy operation on symbols (a kernel's formula, an expression of
        hyperparameters); False, after one error, past the limit: each costs milliseconds."""
        self.symbolic_operations += 1
        if self.symbolic_operations == limits.MAX_FORMULA_OPERATIONS + 1:
            self.diags.error(
                "formula-too-large",
                f"the spec's formulas (kernels and expressions of hyperparameters) have more "
                f"than {limits.MAX_FORMULA_OPERATIONS} operations in all",
                getattr(expr, "span", None),
                "write shorter formulas: the checker proves properties of each one",
            )
        return self.symbolic_operations <= limits.MAX_FORMULA_OPERATIONS

    def _checked(self, value: sp.Expr, expr: s.Expr) -> sp.Expr | None:
        """`value` if it is a finite real number (or an expression of symbols without infinite
        or complex parts) of bounded size; else None after a located `domain` or
        `number-size` error."""
        if value.has(sp.nan, sp.zoo, sp.oo, -sp.oo, sp.I) or (
            value.is_number and value.is_extended_real is False
        ):
            self.diags.error(
                "domain",
                f"`{short(s.print_expr(expr))}` is not a finite real number",
                expr.span,
                "it divides by zero, or takes a fractional power of a negative number",
            )
            return None
        if value.is_number:
            size = abs(value.evalf(20))
            if size > limits.MAX_MAGNITUDE or 0 < size < limits.MIN_MAGNITUDE:
                what = "large" if size > 1 else "small"
                self.diags.error(
                    "number-size",
                    f"`{short(s.print_expr(expr))}` is too {what} (about {show_size(size)})",
                    expr.span,
                    limits.NUMBER_HELP,
                )
                return None
            if not value.is_Rational:
                # an irrational number (2^0.5) as 30 digits: towers of exact radicals cost
                # sympy time at every level
                return sp.Float(value.evalf(30), 30)
        else:
            degree = formula_degree(value)
            if degree > limits.MAX_DEGREE:
                self.diags.error(
                    "number-size",
                    f"the powers in this formula multiply to {show_size(degree)}, more than "
                    f"{limits.MAX_DEGREE}",
                    expr.span,
                    "symbolic proofs expand powers: use smaller exponents",
                )
                return None
        return value

    def _hyper_use(self, value: sp.Expr, arg: Arg, span: Span) -> None:
        """Record each hyperparameter in `value` with the domain of the slot it fills."""
        domain = arg.domain or reg.REAL
        if value.free_symbols and not value.is_Symbol and arg.domain is not None:
            # `temperature=2 * t`: the slot's domain binds the expression, checked at run time
            self.ir.constraints.append((value, arg.domain, arg.name))
        for sym in sorted(value.free_symbols, key=str):
            name = str(sym)
            direct = value == sym
            current = self.ir.hypers.get(name)
            slot_domain = domain if direct else reg.REAL
            integer = arg.kind == "int" and direct
            if current is None:
                self.ir.hypers[name] = Hyper(name, None, slot_domain, integer, span)
            else:
                merged = current.domain.intersect(slot_domain)
                self.ir.hypers[name] = replace(
                    current, domain=merged, integer=current.integer or integer
                )


def formula_depth(expr: s.Expr) -> int:
    """Nesting of operations and calls in an expression (a name or number is 0)."""
    if isinstance(expr, s.BinOp):
        return 1 + max(formula_depth(expr.left), formula_depth(expr.right))
    if isinstance(expr, s.Neg):
        return 1 + formula_depth(expr.operand)
    if isinstance(expr, s.Call):
        inner = [*expr.args, *(k.value for k in expr.keywords)]
        return 1 + max((formula_depth(a) for a in inner), default=0)
    return 0


def formula_degree(expr: sp.Expr) -> float:
    """How far the powers of a formula multiply, like a polynomial's degree: d2 is 1,
    (d2 + 1)^3 is 3, ((d2 + 1)^2 + 1)^2 is 4, d2 * exp(-d2^2) is 3."""
    if expr.is_Atom:
        return 1.0 if expr.free_symbols else 0.0
    if isinstance(expr, sp.Pow) and expr.exp.is_number:
        return formula_degree(expr.base) * max(1.0, abs(float(expr.exp)))
    if isinstance(expr, sp.Mul):
        return float(sum(formula_degree(a) for a in expr.args))
    return max(formula_degree(a) for a in expr.args)


def has_name(expr: s.Expr) -> bool:
    if isinstance(expr, s.Name):
        return True
    if isinstance(expr, s.BinOp):
        return has_name(expr.left) or has_name(expr.right)
    if isinstance(expr, s.Neg):
        return has_name(expr.operand)
    return False


def power_problem(base: sp.Expr, exponent: sp.Expr) -> str | None:
    """Why base^exponent (both numbers) is out of bounds, judged from logarithms before it is
    computed; None when it may be computed."""
    b, e = abs(complex(base.evalf(20))), complex(exponent.evalf(20)).real
    if b == 0 or b == 1:
        return None
    digits = e * math.log10(b)
    if digits > math.log10(limits.MAX_MAGNITUDE):
        return f"this power is about 10^{round(digits)}, too large"
    if digits < math.log10(limits.MIN_MAGNITUDE):
        return f"this power is about 10^{round(digits)}, too small"
    return None


def show_size(value: Any) -> str:
    """A number as short text, whatever its size: 65536, 0.25, 10^600, 10^-320."""
    value = sp.Abs(sp.sympify(value)).evalf(20) if isinstance(value, sp.Basic) else abs(value)
    if value == 0:
        return "0"
    exponent = float(sp.log(value, 10).evalf(20))
    if abs(exponent) >= 15:
        return f"10^{round(exponent)}"
    f = float(value)
    return repr(int(f)) if f == int(f) else f"{f:.3g}"


def short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def arith(op: str, left: sp.Expr, right: sp.Expr) -> sp.Expr:
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        return left / right
    return left**right


def show(value: sp.Expr) -> str:
    f = float(value) if value.is_real else math.nan
    if not math.isfinite(f):
        return str(value)  # nan, zoo (1/0), oo
    return repr(int(f)) if f == int(f) else repr(f)
