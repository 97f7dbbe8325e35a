"""The surface syntax: frozen dataclasses, one per construct, each with its source span.

Takes: nothing (the parser builds these). Guarantees: equality ignores spans, so a spec parsed from
`print_spec(spec)` compares equal to `spec`; `print_spec` writes canonical, re-parseable text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .source import Span

NO_SPAN = Span(0, 0)


@dataclass(frozen=True)
class Number:
    value: float
    text: str = field(compare=False, default="")
    span: Span = field(compare=False, default=NO_SPAN)


@dataclass(frozen=True)
class Name:
    id: str
    span: Span = field(compare=False, default=NO_SPAN)


@dataclass(frozen=True)
class String:
    value: str
    span: Span = field(compare=False, default=NO_SPAN)


@dataclass(frozen=True)
class Keyword:
    name: Name
    value: Expr
    span: Span = field(compare=False, default=NO_SPAN)


@dataclass(frozen=True)
class Call:
    func: Name
    args: tuple[Expr, ...] = ()
    keywords: tuple[Keyword, ...] = ()
    span: Span = field(compare=False, default=NO_SPAN)


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / ^
    left: Expr
    right: Expr
    span: Span = field(compare=False, default=NO_SPAN)


@dataclass(frozen=True)
class Neg:
    operand: Expr
    span: Span = field(compare=False, default=NO_SPAN)


Expr = Number | Name | String | Call | BinOp | Neg


@dataclass(frozen=True)
class Method:
    name: Name
    title: String | None = None
    span: Span = field(compare=False, default=NO_SPAN)


@dataclass(frozen=True)
class Param:
    name: Name
    default: Expr | None = None
    interval: tuple[Expr, Expr] | None = None
    span: Span = field(compare=False, default=NO_SPAN)


@dataclass(frozen=True)
class KernelDef:
    name: Name
    params: tuple[Name, ...]
    body: Expr
    span: Span = field(compare=False, default=NO_SPAN)


@dataclass(frozen=True)
class Assign:
    target: Name
    value: Expr
    span: Span = field(compare=False, default=NO_SPAN)


Statement = Method | Param | KernelDef | Assign


@dataclass(frozen=True)
class Spec:
    statements: tuple[Statement, ...]


# -- printing ---------------------------------------------------------------------------------

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "^": 4}


def print_expr(expr: Expr, parent: int = 0) -> str:
    """Canonical text of an expression, parenthesised only where precedence needs it."""
    if isinstance(expr, Number):
        return expr.text or repr(expr.value)
    if isinstance(expr, Name):
        return expr.id
    if isinstance(expr, String):
        return json.dumps(expr.value)
    if isinstance(expr, Call):
        parts = [print_expr(a) for a in expr.args]
        parts += [f"{k.name.id}={print_expr(k.value)}" for k in expr.keywords]
        return f"{expr.func.id}({', '.join(parts)})"
    if isinstance(expr, Neg):
        text = "-" + print_expr(expr.operand, 3)
        return f"({text})" if parent >= 3 else text
    prec = _PRECEDENCE[expr.op]
    # left-associative: the right operand of - and / needs brackets at equal precedence;
    # ^ is right-associative, so its left operand does.
    left_prec = prec + 1 if expr.op == "^" else prec
    right_prec = prec if expr.op == "^" else prec + 1
    text = f"{print_expr(expr.left, left_prec)} {expr.op} {print_expr(expr.right, right_prec)}"
    return f"({text})" if prec < parent else text


def print_statement(stmt: Statement) -> str:
    if isinstance(stmt, Method):
        title = f" {json.dumps(stmt.title.value)}" if stmt.title else ""
        return f"method {stmt.name.id}{title}"
    if isinstance(stmt, Param):
        text = f"param {stmt.name.id}"
        if stmt.interval:
            text += f" in [{print_expr(stmt.interval[0])}, {print_expr(stmt.interval[1])}]"
        if stmt.default is not None:
            text += f" = {print_expr(stmt.default)}"
        return text
    if isinstance(stmt, KernelDef):
        params = ", ".join(p.id for p in stmt.params)
        return f"kernel {stmt.name.id}({params}) = {print_expr(stmt.body)}"
    return f"{stmt.target.id} = {print_expr(stmt.value)}"


def print_spec(spec: Spec) -> str:
    """The spec as canonical source text, one statement a line."""
    return "".join(print_statement(s) + "\n" for s in spec.statements)
