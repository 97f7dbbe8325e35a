"""Lowering: surface syntax -> IR, resolving names against the registry.

Takes: a syntax.Spec and a Diagnostics collector. Guarantees: every name is resolved (or an
`unknown-name` error with "did you mean"), every call is bound to its registry arguments (arity,
keywords, kinds, literal domains), every node is typed (DistType for distributions). Problems are
collected, not raised; the result is None only when p, q or the mapper could not be built.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, replace
from typing import Any

import sympy as sp

from . import registry as reg
from . import syntax as s
from .diagnostics import Diagnostics
from .ir import IR, DistType, Hyper, UserKernel
from .registry import Arg, Block, Domain
from .source import Span

_SYMPY_FUNCS = {"exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "abs": sp.Abs}


def did_you_mean(name: str, candidates: list[str]) -> str | None:
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else None


@dataclass
class _Bound:
    """A call's arguments bound to a block's parameters (ok: no binding error was found)."""

    values: dict[str, s.Expr]
    spans: dict[str, Span]
    ok: bool = True


class Lowerer:
    def __init__(self, diags: Diagnostics, default_name: str) -> None:
        self.diags = diags
        self.ir = IR(diags.source, method=default_name)
        self.assigns: dict[str, s.Assign] = {}
        self.declared: dict[str, s.Param] = {}
        self._inputs: dict[str, int] = {}
        self.broken_kernels: set[str] = set()

    # -- statements ------------------------------------------------------------------------
    def run(self, spec: s.Spec) -> IR | None:
        self._collect(spec)
        for name, param in self.declared.items():
            self._declare(name, param)
        mapper = self._mapper(self.assigns.get("mapper"))
        p = self._root("p")
        q = self._root("q")
        if mapper is None or p is None or q is None:
            return None
        self.ir.roots.update(mapper=mapper, p=p, q=q)
        loss = self._loss(self.assigns.get("loss"), p, q)
        if loss is None:
            return None
        self.ir.roots["loss"] = loss
        self.ir.verify()
        return self.ir

    def _collect(self, spec: s.Spec) -> None:
        seen_method = False
        for stmt in spec.statements:
            if isinstance(stmt, s.Method):
                if seen_method:
                    self.diags.error("duplicate-statement", "`method` is given twice", stmt.span)
                seen_method = True
                self.ir.method = stmt.name.id
                self.ir.title = stmt.title.value if stmt.title else None
            elif isinstance(stmt, s.Param):
                if stmt.name.id in self.declared:
                    self.diags.error(
                        "duplicate-statement",
                        f"param `{stmt.name.id}` is declared twice",
                        stmt.span,
                    )
                elif self._reserved(stmt.name):
                    continue
                self.declared.setdefault(stmt.name.id, stmt)
            elif isinstance(stmt, s.KernelDef):
                self._kernel(stmt)
            else:
                self._assign(stmt)

    def _reserved(self, name: s.Name) -> bool:
        if name.id in reg.known_names():
            self.diags.error(
                "bad-argument",
                f"`{name.id}` is a name of the language and cannot be redefined",
                name.span,
            )
            return True
        return False

    def _assign(self, stmt: s.Assign) -> None:
        target = stmt.target.id
        if target not in reg.TARGETS:
            self.diags.error(
                "unknown-statement",
                f"cannot assign to `{target}`: a spec assigns p, q, mapper and loss",
                stmt.target.span,
                did_you_mean(target, list(reg.TARGETS)),
            )
        elif target in self.assigns:
            self.diags.error("duplicate-statement", f"`{target}` is assigned twice", stmt.span)
        else:
            self.assigns[target] = stmt

    def _declare(self, name: str, param: s.Param) -> None:
        domain = reg.REAL
        if param.interval is not None:
            lo, hi = (self._constant(e) for e in param.interval)
            if lo is not None and hi is not None:
                if lo > hi:
                    self.diags.error(
                        "domain", f"empty interval [{lo}, {hi}] for `{name}`", param.span
                    )
                domain = Domain(lo, hi)
        default = self._constant(param.default) if param.default is not None else None
        self.ir.hypers[name] = Hyper(name, default, domain, False, param.name.span)

    def _constant(self, expr: s.Expr) -> float | None:
        value = self._number(expr, allow_hypers=False)
        if value is None:
            return None
        if not value.is_number:
            self.diags.error("bad-argument", "expected a number", getattr(expr, "span", None))
            return None
        return float(value)

    # -- user kernels ----------------------------------------------------------------------
    def _kernel(self, stmt: s.KernelDef) -> None:
        name = stmt.name.id
        if self._reserved(stmt.name):
            return
        if name in self.ir.kernels:
            self.diags.error("duplicate-statement", f"kernel `{name}` is defined twice", stmt.span)
            return
        if not stmt.params or stmt.params[0].id != "d2":
            span = stmt.params[0].span if stmt.params else stmt.name.span
            self.diags.error(
                "kernel-definition",
                f"the first argument of kernel `{name}` must be `d2`, the squared distance",
                span,
                help=f"kernel {name}(d2, ...) = ...",
            )
            return
        symbols = {"d2": sp.Symbol("d2", nonnegative=True)}
        symbols.update({p.id: sp.Symbol(p.id, positive=True) for p in stmt.params[1:]})
        body = self._formula(stmt.body, symbols)
        if body is None:
            self.broken_kernels.add(name)  # its uses are not reported again
            return
        log_weight = sp.expand_log(sp.log(body), force=True)
        self.ir.kernels[name] = UserKernel(
            name, tuple(p.id for p in stmt.params[1:]), log_weight, body, stmt.span
        )

    def _formula(self, expr: s.Expr, symbols: dict[str, sp.Symbol]) -> sp.Expr | None:
        """A kernel body as sympy, built node by node: no text is ever evaluated."""
        if isinstance(expr, s.Number):
            return (
                sp.nsimplify(expr.value) if expr.value == int(expr.value) else sp.Float(expr.value)
            )
        if isinstance(expr, s.Name):
            if expr.id in symbols:
                return symbols[expr.id]
            self.diags.error(
                "unknown-name",
                f"`{expr.id}` is not an argument of this kernel",
                expr.span,
                did_you_mean(expr.id, list(symbols)),
            )
            return None
        if isinstance(expr, s.Neg):
            inner = self._formula(expr.operand, symbols)
            return None if inner is None else -inner
        if isinstance(expr, s.BinOp):
            left, right = self._formula(expr.left, symbols), self._formula(expr.right, symbols)
            if left is None or right is None:
                return None
            return _arith(expr.op, left, right)
        if isinstance(expr, s.Call) and expr.func.id in _SYMPY_FUNCS and len(expr.args) == 1:
            inner = self._formula(expr.args[0], symbols)
            return None if inner is None else _SYMPY_FUNCS[expr.func.id](inner)
        span = getattr(expr, "span", None)
        self.diags.error(
            "kernel-definition",
            "a kernel formula uses numbers, its arguments, + - * / ^ and exp, log, sqrt, abs",
            span,
        )
        return None

    # -- numbers and hyperparameters -------------------------------------------------------
    def _number(self, expr: s.Expr, allow_hypers: bool = True) -> sp.Expr | None:
        if isinstance(expr, s.Number):
            # the literal's exact value: 0.6 + 0.3 + 0.1 sums to 1 in a mixture proof
            return sp.Rational(expr.text) if expr.text else sp.Rational(expr.value)
        if isinstance(expr, s.Neg):
            inner = self._number(expr.operand, allow_hypers)
            return None if inner is None else -inner
        if isinstance(expr, s.BinOp):
            left = self._number(expr.left, allow_hypers)
            right = self._number(expr.right, allow_hypers)
            return None if left is None or right is None else _arith(expr.op, left, right)
        if isinstance(expr, s.Name) and allow_hypers:
            if expr.id in reg.known_names() or expr.id in self.ir.kernels:
                self.diags.error(
                    "bad-argument",
                    f"expected a number or a hyperparameter, got `{expr.id}`",
                    expr.span,
                )
                return None
            return sp.Symbol(expr.id, real=True)
        span = getattr(expr, "span", None)
        self.diags.error("bad-argument", "expected a number", span)
        return None

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

    # -- the mapper --------------------------------------------------------------------------
    def _mapper(self, stmt: s.Assign | None) -> int | None:
        if stmt is None:
            self.diags.error(
                "missing-statement", "the spec has no mapper", None, "add `mapper = table(dim=2)`"
            )
            return None
        call = _as_call(stmt.value)
        if call is None or call.func.id not in reg.BLOCKS:
            name = call.func.id if call else None
            span = call.func.span if call else getattr(stmt.value, "span", None)
            mappers = [b.name for b in reg.blocks("mapper")]
            if name is not None and name not in reg.BLOCKS:
                self.diags.error(
                    "unknown-name", f"unknown mapper `{name}`", span, did_you_mean(name, mappers)
                )
            else:
                self.diags.error("wrong-role", "mapper must be one of " + ", ".join(mappers), span)
            return None
        block = reg.BLOCKS[call.func.id]
        if block.role != "mapper":
            self._wrong_role(call, "a mapper", block)
            return None
        args = self._static_args(block, call)
        if args is None:
            return None
        return self.ir.add(block.name, "mapper", call.span, args, text=s.print_expr(call))

    def _wrong_role(self, call: s.Call, wanted: str, block: Block) -> None:
        self.diags.error(
            "wrong-role",
            f"`{block.name}` is a {block.role}, but {wanted} is needed here",
            call.func.span,
        )

    # -- p and q -----------------------------------------------------------------------------
    def _root(self, name: str) -> int | None:
        stmt = self.assigns.get(name)
        if stmt is None:
            what = "supervisory" if name == "p" else "learned"
            example = "gaussian(x, sigma=1)" if name == "p" else "gaussian(f(x), sigma=1)"
            self.diags.error(
                "missing-statement",
                f"the spec has no {name} (the {what} distribution)",
                None,
                f"add `{name} = {example}`",
            )
            return None
        return self._dist(stmt.value)

    def _is_dist_expr(self, expr: s.Expr) -> bool:
        if isinstance(expr, s.Call):
            block = reg.BLOCKS.get(expr.func.id)
            return expr.func.id in self.ir.kernels or (
                block is not None and block.role in ("distribution", "weights")
            )
        if isinstance(expr, s.Name):
            block = reg.BLOCKS.get(expr.id)
            return block is not None and block.role == "distribution"
        if isinstance(expr, s.BinOp):
            return self._is_dist_expr(expr.left) or self._is_dist_expr(expr.right)
        if isinstance(expr, s.Neg):
            return self._is_dist_expr(expr.operand)
        return False

    def _dist(self, expr: s.Expr) -> int | None:
        """Lower an expression that must denote a distribution (or raw weights)."""
        if isinstance(expr, (s.BinOp, s.Neg)):
            return self._mixture(expr)
        call = _as_call(expr)
        if call is None:
            self.diags.error(
                "wrong-role",
                "expected a distribution such as gaussian(x)",
                getattr(expr, "span", None),
            )
            return None
        name = call.func.id
        if name in self.ir.kernels:
            return self._kernel_call(self.ir.kernels[name], call)
        if name in self.broken_kernels:
            return None
        block = reg.BLOCKS.get(name)
        if block is None:
            candidates = [b.name for b in reg.blocks("distribution")] + list(self.ir.kernels)
            if name in reg.INPUTS or name == reg.MAPPER_OUTPUT:
                self.diags.error(
                    "wrong-role",
                    f"`{name}` is data, not a distribution",
                    call.func.span,
                    "build one from it, e.g. " + _DATA_ADVICE.get(name, f"gaussian({name})"),
                )
            else:
                self.diags.error(
                    "unknown-name",
                    f"unknown distribution `{name}`",
                    call.func.span,
                    did_you_mean(name, candidates),
                )
            return None
        if block.role != "distribution":
            self._wrong_role(call, "a distribution", block)
            return None
        return self._block_call(block, call)

    def _mixture(self, expr: s.Expr) -> int | None:
        terms = self._terms(expr, sp.Integer(1))
        if terms is None:
            return None
        nodes = [(w, self._dist(d)) for w, d in terms]
        if any(n is None for _, n in nodes):
            return None
        kids = [n for _, n in nodes if n is not None]
        weights = [w for w, _ in nodes]
        types = self._same_support(kids, "mixture components")
        first = types[0]
        mtype = DistType(
            first.support,
            first.columns,
            first.diagonal,
            "row" if all(t.normalised == "row" for t in types) else "raw",
            any(t.learned for t in types),
            all(t.differentiable or not t.learned for t in types),
            any(t.may_be_empty for t in types),
            any(t.cross for t in types),
        )
        span, text = getattr(expr, "span", None), s.print_expr(expr)
        return self.ir.add("mixture", mtype, span, {"weights": weights}, kids, text=text)

    def _same_support(self, kids: list[int], what: str) -> list[DistType]:
        """The operands' types; an error for each whose support differs from the first's."""
        types = [self.ir.dist_type(k) for k in kids]
        first = types[0]
        for kid, t in zip(kids[1:], types[1:], strict=True):
            if (t.support, t.columns, t.diagonal) != (first.support, first.columns, first.diagonal):
                self.diags.error(
                    "shape-mismatch",
                    f"{what} have different supports: {first.describe_support()} "
                    f"and {t.describe_support()}",
                    self.ir.span(kid),
                )
        return types

    def _terms(self, expr: s.Expr, scale: sp.Expr) -> list[tuple[sp.Expr, s.Expr]] | None:
        """Flatten `a * d1 + b * d2` into [(a, d1), (b, d2)]."""
        if isinstance(expr, s.BinOp) and expr.op == "+":
            left, right = self._terms(expr.left, scale), self._terms(expr.right, scale)
            return None if left is None or right is None else left + right
        if isinstance(expr, s.BinOp) and expr.op in ("*", "/"):
            dl, dr = self._is_dist_expr(expr.left), self._is_dist_expr(expr.right)
            if expr.op == "*" and dl != dr:
                dist, num = (expr.left, expr.right) if dl else (expr.right, expr.left)
                weight = self._number(num)
                return None if weight is None else self._terms(dist, scale * weight)
            if expr.op == "/" and dl and not dr:
                weight = self._number(expr.right)
                return None if weight is None else self._terms(expr.left, scale / weight)
        if isinstance(expr, (s.BinOp, s.Neg)):
            self.diags.error(
                "mixture-weights",
                "a mixture is a sum of weighted distributions: a * d1 + b * d2",
                getattr(expr, "span", None),
                "weights must be numbers or hyperparameters; distributions cannot be subtracted",
            )
            return None
        return [(scale, expr)]

    # -- calls -------------------------------------------------------------------------------
    def _bind(self, block_name: str, params: list[Arg], call: s.Call) -> _Bound:
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
        return _Bound(values, spans, ok)

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
                out[arg.name] = _default(arg)
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
                    f"{arg.name} = {_show(value)} is outside its domain: "
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

    def _variadic_call(self, block: Block, call: s.Call) -> int | None:
        if call.keywords or len(call.args) < 2:
            self.diags.error(
                "arity",
                f"{block.name}() takes two or more distributions and no keywords",
                call.span,
            )
            return None
        kids = [self._dist(arg) for arg in call.args]
        if any(k is None for k in kids):
            return None
        nodes = [k for k in kids if k is not None]
        types = self._same_support(nodes, f"{block.name}() operands")
        first = types[0]
        utype = DistType(
            first.support,
            first.columns,
            first.diagonal,
            "row",
            any(t.learned for t in types),
            False,
            all(t.may_be_empty for t in types),
            any(t.cross for t in types),
        )
        return self.ir.add(block.name, utype, call.span, {}, nodes, text=s.print_expr(call))

    def _block_call(self, block: Block, call: s.Call) -> int | None:
        if block.extra.get("variadic"):
            return self._variadic_call(block, call)
        params = list(block.args)
        text = s.print_expr(call)
        columns_call = None
        if block.accepts_columns and len(call.args) >= 2:
            second = call.args[1]
            if isinstance(second, s.Call) and second.func.id == "prototypes":
                columns_call = second
                call = replace(call, args=call.args[:1] + call.args[2:])
        bound = self._bind(block.name, params, call)
        kids: list[int] = []
        types: list[Any] = []
        args: dict[str, Any] = {}
        ok = bound.ok
        for arg in params:
            if arg.name not in bound.values:
                if arg.default is not None and arg.default is not reg.REQUIRED:
                    args[arg.name] = _default(arg)
                continue
            expr, span = bound.values[arg.name], bound.spans[arg.name]
            if arg.kind in ("vector", "labels", "index", "modality", "dist", "weights"):
                kid = self._operand(arg, expr, block)
                if kid is None:
                    ok = False
                    continue
                kids.append(kid)
                types.append(self.ir.type(kid))
            else:
                value = self._static(arg, expr, span)
                if value is None:
                    ok = False
                else:
                    args[arg.name] = value
        if columns_call is not None:
            col = self._columns(columns_call)
            if col is None:
                return None
            kids.append(col)
            args["columns"] = self.ir.args(col)["n"]
        if not ok:
            return None
        if not self._check_options(block, call, args, kids):
            return None
        if block.name in ("walk", "joint") and any(
            isinstance(self.ir.type(k), DistType) and self.ir.dist_type(k).support == "columns"
            for k in kids
        ):
            self.diags.error(
                "shape-mismatch",
                f"{block.name}() needs an N x N distribution over items, not N x n columns",
                call.span,
            )
            return None
        node_type = self._type(block, kids, args)
        return self.ir.add(block.name, node_type, call.span, args, kids, text=text)

    def _check_options(
        self, block: Block, call: s.Call, args: dict[str, Any], kids: list[int]
    ) -> bool:
        explicit = {k.name.id for k in call.keywords}
        explicit |= {a.name for a, _ in zip(block.args, call.args, strict=False)}
        ok = True
        if block.name == "gaussian":
            given = sorted(explicit & {"sigma", "temperature", "perplexity"})
            if len(given) > 1:
                self.diags.error(
                    "conflicting-arguments",
                    f"gaussian() takes one of sigma, temperature, perplexity; got {' and '.join(given)}",
                    call.span,
                )
                ok = False
            if "perplexity" in explicit:
                learned = any(self._learned(k) for k in kids)
                if learned or "columns" in args:
                    self.diags.error(
                        "bad-argument",
                        "perplexity calibrates sigma_i on inputs; it cannot apply to f(x) or prototypes",
                        call.span,
                        "give a fixed width: sigma=... or temperature=...",
                    )
                    ok = False
                args.pop("sigma", None)
            elif "temperature" in explicit:
                args.pop("sigma", None)
            else:
                args.pop("temperature", None)
            if "perplexity" not in explicit:
                args.pop("perplexity", None)
        metric = args.get("metric")
        if metric is not None and metric not in block.metrics:
            self.diags.error(
                "bad-argument",
                f"{block.name}() does not take metric={metric}; it takes {', '.join(block.metrics)}",
                call.span,
            )
            ok = False
        if "columns" in args and args.get("diagonal"):
            self.diags.error(
                "bad-argument", "diagonal=true has no meaning over prototype columns", call.span
            )
            ok = False
        return ok

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

    def _kernel_call(self, kernel: UserKernel, call: s.Call) -> int | None:
        params = [Arg("v", "vector")]
        params += [Arg(name, "real", reg.REQUIRED, reg.POSITIVE) for name in kernel.params]
        params += [
            reg.Arg("metric", "choice", "euclidean", choices=("euclidean", "cosine")),
            reg._DIAGONAL,
        ]
        bound = self._bind(kernel.name, params, call)
        kid = None
        if "v" in bound.values:
            kid = self._operand(params[0], bound.values["v"], reg.BLOCKS["normalize"])
        args: dict[str, Any] = {"kernel": kernel.name}
        ok = bound.ok and kid is not None
        for arg in params[1:]:
            if arg.name in bound.values:
                value = self._static(arg, bound.values[arg.name], bound.spans[arg.name])
                ok = ok and value is not None
                args[arg.name] = value
            else:
                args[arg.name] = _default(arg)
        if not ok or kid is None:
            return None
        learned = self._learned(kid)
        t = DistType("pairs", None, bool(args["diagonal"]), "raw", learned, True, False)
        return self.ir.add("kernel", t, call.span, args, [kid], text=s.print_expr(call))

    def _type(self, block: Block, kids: list[int], args: dict[str, Any]) -> DistType:
        kid_types = [self.ir.type(k) for k in kids]
        dists = [t for t in kid_types if isinstance(t, DistType)]
        learned = any(self._learned(k) for k in kids)
        if block.name in ("normalize", "debias", "walk"):
            inner = dists[0]
            return replace(inner, normalised="row")
        if block.name == "joint":
            return replace(dists[0], normalised="joint")
        if "columns" in args:
            n = args["columns"]
            return DistType("columns", n, False, "row", True, True, False)
        if block.name == "classes":
            return DistType("columns", args["n"], False, "row", False, False, False)
        diagonal = block.diagonal if not block.pairwise else bool(args.get("diagonal", False))
        if "diagonal" in args and not block.pairwise:
            diagonal = bool(args["diagonal"])
        return DistType(
            "pairs",
            None,
            bool(diagonal),
            "row",
            learned,
            block.differentiable,
            block.may_be_empty,
            bool(block.extra.get("cross", False)),
        )

    # -- the loss ----------------------------------------------------------------------------
    def _loss(self, stmt: s.Assign | None, p: int, q: int) -> int | None:
        if stmt is None:
            return self.ir.add("kl", "divergence", None, {}, [p, q])
        call = _as_call(stmt.value)
        divergences = [b.name for b in reg.blocks("divergence")]
        if call is None or call.func.id not in divergences:
            name = call.func.id if call else s.print_expr(stmt.value)
            self.diags.error(
                "unknown-name",
                f"unknown divergence `{name}`; loss is one of {', '.join(divergences)}",
                call.func.span if call else getattr(stmt.value, "span", None),
                did_you_mean(name, divergences),
            )
            return None
        args = [a.id if isinstance(a, s.Name) else None for a in call.args]
        if call.keywords or args != ["p", "q"]:
            self.diags.error(
                "bad-argument",
                f"the divergence compares the spec's p and q: write {call.func.id}(p, q)",
                call.span,
            )
            return None
        return self.ir.add(
            call.func.id, "divergence", call.span, {}, [p, q], text=s.print_expr(call)
        )


_DATA_ADVICE = {
    "y": "label(y) or classes(y, n)",
    "index": "augmentation(index)",
    "modality": "cross_modal(index, modality)",
    "f": "gaussian(f(x))",
}


def _as_call(expr: s.Expr) -> s.Call | None:
    if isinstance(expr, s.Call):
        return expr
    if isinstance(expr, s.Name):
        return s.Call(expr, (), (), expr.span)
    return None


def _arith(op: str, left: sp.Expr, right: sp.Expr) -> sp.Expr:
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        return left / right
    return left**right


def _default(arg: Arg) -> Any:
    """The argument's default as an IR value; None when it has none (or is required and missing,
    which `_bind` has already reported)."""
    value = arg.default
    if value is reg.REQUIRED:
        return None
    if isinstance(value, bool) or isinstance(value, str) or value is None:
        return value
    assert isinstance(value, (int, float))
    return sp.Integer(int(value)) if float(value) == int(value) else sp.Float(value)


def _show(value: sp.Expr) -> str:
    f = float(value) if value.is_real else math.nan
    return repr(int(f)) if f == int(f) else repr(f)


def lower(spec: s.Spec, diags: Diagnostics, default_name: str = "method") -> IR | None:
    """Lower a parsed spec; errors go to `diags`."""
    return Lowerer(diags, default_name).run(spec)
