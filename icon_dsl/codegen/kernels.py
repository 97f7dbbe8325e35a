"""A kernel's log-weight as sympy, and as torch lines for the generated module.

Takes: a kernel node's op and arguments (a registry block or a user kernel) and a way to print
a number or hyperparameter expression (`num`). Guarantees: log w(d2) with the spec's values in,
numbers folded where exact; lines whose hyperparameter-only parts are named once (short lines,
fewer passes over the N x N tensor); the derivative by sympy for the closed-form gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sympy as sp

from .. import registry as reg
from ..ir import IR
from .layout import assignment_lines
from .numbers import ConstantPrinter, KernelPrinter, python_expr

#: Code for a number or hyperparameter expression (Emitter.num).
Num = Callable[[Any], str]


def gaussian_width(args: dict) -> Any:
    """sigma^2 of a gaussian's arguments (temperature, when given, is sigma^2)."""
    return args["temperature"] if "temperature" in args else args["sigma"] ** 2


def printable(value: Any, num: Num) -> sp.Expr:
    """A kernel argument for sympy: integers and short fractions stay exact (so they fold),
    other numbers and hyperparameter expressions become symbols named by their code."""
    value = sp.sympify(value)
    if value.is_Integer or (value.is_Rational and value.q < 1000):
        return value
    return sp.Symbol(num(value), positive=True)


def log_weight(ir: IR, op: str, args: dict, d2: sp.Symbol, num: Num) -> sp.Expr:
    """log w(d2) of a kernel (a registry block's formula or a user kernel) with the spec's
    arguments in: numbers folded where exact, other values as symbols named by their code."""
    if op == "kernel":
        kernel = ir.kernels[args["kernel"]]
        subs = {
            sym: d2 if sym.name == "d2" else printable(args[sym.name], num)
            for sym in kernel.log_weight.free_symbols
        }
        return kernel.log_weight.xreplace(subs)
    block = reg.BLOCKS[op]
    assert block.log_weight is not None
    values = {a.name: args.get(a.name) for a in block.args if a.kind in ("real", "int")}
    values = {k: printable(v, num) for k, v in values.items() if v is not None}
    if op == "gaussian":
        values["sigma"] = sp.sqrt(printable(gaussian_width(args), num))
    return block.log_weight(d2, values)


def kernel_lines(ir: IR, op: str, args: dict, d2: str, num: Num) -> list[str]:
    """Lines computing (log w, d log w / d d2) of a kernel from `d2`: its derivative by
    sympy, the parts that do not depend on d2 (hyperparameter expressions) and the common
    parts named and computed once."""
    d2_symbol = sp.Symbol(d2, nonnegative=True)
    log_w = log_weight(ir, op, args, d2_symbol, num)
    slope = sp.cancel(sp.diff(log_w, d2_symbol))
    names = sp.numbered_symbols("shared")
    constants: dict[sp.Expr, sp.Symbol] = {}
    log_w, slope = (hoist(e, d2_symbol, constants, names) for e in (log_w, slope))
    shared, (log_w, slope) = sp.cse([log_w, slope], symbols=names)
    lines = [
        line
        for key, value in constants.items()
        for line in assignment(str(value), key, ConstantPrinter())
    ]
    assigned = [*shared, (sp.Symbol("log_w"), log_w), (sp.Symbol("slope"), slope)]
    lines += [line for name, expr in assigned for line in assignment(str(name), expr)]
    return [*lines, "return log_w, slope"]


def value_at_zero(log_w: sp.Expr, d2: sp.Symbol) -> str | None:
    """Code for the limit of log w as d2 -> 0+ when its slope is infinite there (sqrt(d2),
    d2^0.3, log(d2)), else None: the common kernels have a finite slope and need no guard."""
    if d2 not in log_w.free_symbols:
        return None
    infinite = (sp.zoo, sp.oo, -sp.oo, sp.nan)
    if not sp.diff(log_w, d2).subs(d2, 0).has(*infinite):
        return None
    value = log_w.subs(d2, 0)
    if value.has(*infinite):
        value = sp.limit(log_w, d2, 0, "+")
    if value == -sp.oo or value.has(*infinite):
        return "-math.inf"  # w(0) = 0 (log(d2)): no weight on duplicates
    return python_expr(ConstantPrinter().doprint(value), bracket=False)


def replace(expr: sp.Expr, old: sp.Symbol, new: sp.Symbol) -> tuple[sp.Symbol, sp.Expr]:
    return new, expr.xreplace({old: new})


def hoist(
    expr: sp.Expr,
    variable: sp.Symbol,
    constants: dict[sp.Expr, sp.Symbol],
    names: Iterator[sp.Symbol],
) -> sp.Expr:
    """expr with the parts that involve hyperparameters but not `variable` replaced by named
    constants (recorded in `constants`), the constant factors (terms) of a product (sum) taken
    together: short lines, and fewer passes over the N x N tensor."""

    def name(constant: sp.Expr) -> sp.Expr:
        if not constant.free_symbols:  # a plain number stays in the expression, as a number:
            return constant if constant.is_Number else sp.Float(constant.evalf(17))  # log(500)
        if constant not in constants:
            constants[constant] = next(names)
        return constants[constant]

    if expr.is_Atom:
        return expr
    if variable not in expr.free_symbols:
        return name(expr)
    parts = [hoist(a, variable, constants, names) for a in expr.args if variable in a.free_symbols]
    fixed = [a for a in expr.args if variable not in a.free_symbols]
    if isinstance(expr, (sp.Mul, sp.Add)) and fixed:
        return expr.func(name(expr.func(*fixed)), *parts)
    return expr.func(*(hoist(a, variable, constants, names) for a in expr.args))


def assignment(name: str, expr: sp.Expr, printer: Any = None) -> list[str]:
    """`name = expr` as torch code (or the printer's), laid out for a method body (column 8)."""
    code = python_expr(str((printer or KernelPrinter()).doprint(expr)), bracket=False)
    return assignment_lines(name, code, indent=8)
