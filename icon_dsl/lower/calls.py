"""A call's arguments bound to a block's parameters: arity, keywords, kinds and domains."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy as sp

from .. import registry as reg
from .. import syntax as s
from ..ir import DistType
from ..registry import Arg, Block
from ..source import Span
from .names import did_you_mean
from .numbers import NumberLowerer, show


@dataclass
class Bound:
    """A call's arguments bound to a block's parameters (ok: no binding error was found)."""

    values: dict[str, s.Expr]
    spans: dict[str, Span]
    ok: bool = True


class CallLowerer(NumberLowerer):
    """Binding calls, their static arguments (numbers, choices, bools) and their operands."""

    def _bind(self, block_name: str, params: list[Arg], call: s.Call) -> Bound:
        values: dict[str, s.Expr] = {}
        spans: dict[str, Span] = {}
        ok = True
        positional = [a for a in params]
        if len(call.args) > len(positional):
            extra = call.args[len(positional)]
            self.diags.error(
                "arity",
                f"{block_name}() takes at most {len(positional)} positional argument(s), "
                f"got {len(call.args)}",
                extra.span,
            )
            ok = False
        for arg, value in zip(positional, call.args, strict=False):
            values[arg.name] = value
            spans[arg.name] = value.span
        names = [a.name for a in params]
        for kw in call.keywords:
            if kw.name.id not in names:
                self.diags.error(
                    "unknown-keyword",
                    f"{block_name}() has no argument `{kw.name.id}`",
                    kw.name.span,
                    did_you_mean(kw.name.id, names) or f"its arguments: {', '.join(names)}",
                )
                ok = False
            elif kw.name.id in values:
                self.diags.error(
                    "duplicate-argument", f"argument `{kw.name.id}` is given twice", kw.span
                )
                ok = False
            else:
                values[kw.name.id] = kw.value
                spans[kw.name.id] = kw.span
        for arg in params:
            if arg.required and arg.name not in values:
                self.diags.error(
                    "arity", f"{block_name}() is missing its argument `{arg.name}`", call.span
                )
                ok = False
        return Bound(values, spans, ok)

    def _static_args(self, block: Block, call: s.Call) -> dict[str, Any] | None:
        bound = self._bind(block.name, list(block.args), call)
        out: dict[str, Any] = {}
        ok = bound.ok
        for arg in block.args:
            if arg.name in bound.values:
                value = self._static(arg, bound.values[arg.name], bound.spans[arg.name])
                ok = ok and value is not None
                out[arg.name] = value
            elif arg.default is not None:
                out[arg.name] = default(arg)
        return out if ok else None

    def _static(self, arg: Arg, expr: s.Expr, span: Span) -> Any:
        """A number, choice or bool argument."""
        if arg.kind in ("real", "int"):
            value = self._number(expr)
            if value is None:
                return None
            if not value.is_number:
                self._hyper_use(value, arg, span)
            elif arg.domain and not (value.is_real and arg.domain.contains(float(value))):
                self.diags.error(
                    "domain",
                    f"{arg.name} = {show(value)} is outside its domain: "
                    f"{arg.domain.describe(arg.name)}",
                    span,
                )
                return None
            return value
        if arg.kind == "choice":
            if isinstance(expr, s.Name) and expr.id in arg.choices:
                return expr.id
            got = expr.id if isinstance(expr, s.Name) else s.print_expr(expr)
            self.diags.error(
                "bad-argument",
                f"{arg.name} must be one of {', '.join(arg.choices)}; got `{got}`",
                span,
                did_you_mean(got, list(arg.choices)),
            )
            return None
        if arg.kind == "bool":
            if isinstance(expr, s.Name) and expr.id in ("true", "false"):
                return expr.id == "true"
            self.diags.error("bad-argument", f"{arg.name} must be true or false", span)
            return None
        raise AssertionError(arg.kind)

    def _learned(self, node: int) -> bool:
        t = self.ir.type(node)
        if isinstance(t, DistType):
            return t.learned
        return self.ir.op(node) in ("f", "prototypes")

    def _operand(self, arg: Arg, expr: s.Expr, block: Block) -> int | None:
        if arg.kind in ("dist", "weights"):
            return self._dist(expr)
        if arg.kind == "vector":
            if isinstance(expr, s.Call) and expr.func.id == reg.MAPPER_OUTPUT:
                return self._mapper_output(expr)
        if isinstance(expr, s.Name) and reg.INPUTS.get(expr.id) == arg.kind:
            return self._input(expr.id)
        wanted = {
            "vector": "x or f(x)",
            "labels": "y",
            "index": "index",
            "modality": "modality",
        }[arg.kind]
        got = expr.id if isinstance(expr, s.Name) else s.print_expr(expr)
        help_text = None
        if isinstance(expr, s.Name) and expr.id not in reg.known_names():
            help_text = did_you_mean(expr.id, [n for n, k in reg.INPUTS.items() if k == arg.kind])
        self.diags.error(
            "bad-argument",
            f"{block.name}() needs {wanted} as `{arg.name}`, got `{got}`",
            getattr(expr, "span", None),
            help_text,
        )
        return None

    def _input(self, name: str) -> int:
        if name not in self._inputs:
            self._inputs[name] = self.ir.add("input", reg.INPUTS[name], None, {"name": name})
        return self._inputs[name]

    def _mapper_output(self, call: s.Call) -> int | None:
        if (
            len(call.args) != 1
            or call.keywords
            or not (isinstance(call.args[0], s.Name) and call.args[0].id == "x")
        ):
            self.diags.error(
                "bad-argument", "the mapper is applied to the features: write f(x)", call.span
            )
            return None
        key = "f(x)"
        if key not in self._inputs:
            self._inputs[key] = self.ir.add("f", "vector", None, {})
        return self._inputs[key]

    def _columns(self, call: s.Call) -> int | None:
        block = reg.BLOCKS["prototypes"]
        args = self._static_args(block, call)
        if args is None:
            return None
        return self.ir.add("prototypes", "columns", call.span, args, text=s.print_expr(call))


def default(arg: Arg) -> Any:
    """The argument's default as an IR value; None when it has none (or is required and missing,
    which `_bind` has already reported)."""
    value = arg.default
    if value is reg.REQUIRED:
        return None
    if isinstance(value, bool) or isinstance(value, str) or value is None:
        return value
    assert isinstance(value, (int, float))
    return sp.Integer(int(value)) if float(value) == int(value) else sp.Float(value)
