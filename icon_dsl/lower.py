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

from . import limits
from . import registry as reg
from . import syntax as s
from .diagnostics import Diagnostics
from .ir import IR, DistType, Hyper, UserKernel
from .registry import Arg, Block, Domain
from .source import Span

_SYMPY_FUNCS = reg.KERNEL_FUNCTIONS


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
        self.used: dict[str, Span] = {}  # hyperparameter names read, with their first use
        self.symbolic_operations = 0  # sympy operations on symbols: the costly kind
        self.mixture_terms = 0

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
        self._check_defaults()
        self._check_unused()
        self.ir.verify()
        return self.ir

    def _check_defaults(self) -> None:
        """A default must lie in its parameter's domain: the declared interval and the domain
        of every slot it fills (else the module would refuse its own default)."""
        for name, param in self.declared.items():
            hyper = self.ir.hypers.get(name)
            if hyper is None or hyper.default is None or param.default is None:
                continue
            value = hyper.default
            if hyper.domain.contains(value) and not (hyper.integer and value != int(value)):
                continue
            rule = hyper.domain.describe(name)
            if hyper.integer and hyper.domain.contains(value):
                rule = f"{name} an integer"
            self.diags.error(
                "domain",
                f"the default {name} = {_show(sp.Float(value))} is outside its domain: {rule}",
                param.default.span,
            )

    def _check_unused(self) -> None:
        """A declared param that nothing reads is a warning: most often its use is misspelt,
        and the misspelling became a required hyperparameter of its own. Only a spec without
        errors is judged: a use inside a statement with an error is not recorded."""
        if self.diags.errors:
            return
        unused = [name for name in self.declared if name not in self.used]
        undeclared = [name for name in self.used if name not in self.declared]
        for name in unused:
            typo = next((u for u in undeclared if did_you_mean(u, [name])), None)
            where = f"`{typo}` is used instead" if typo else "remove it or use it"
            self.diags.warning(
                "unused-param",
                f"param `{name}` is declared but never used",
                self.declared[name].name.span,
                f"{where}" + (f": did you mean `{name}` there?" if typo else ""),
            )
            if typo:
                self.diags.warning(
                    "unused-param",
                    f"`{typo}` is not declared: it becomes a hyperparameter with no default",
                    self.used[typo],
                    f"did you mean `{name}`?",
                )

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
        seen: set[str] = set()
        for param in stmt.params:
            if param.id in seen:
                self.diags.error(
                    "duplicate-argument",
                    f"`{param.id}` is an argument of kernel `{name}` twice",
                    param.span,
                    "give each argument its own name",
                )
                self.broken_kernels.add(name)
                return
            seen.add(param.id)
        symbols = {"d2": sp.Symbol("d2", nonnegative=True)}
        symbols.update({p.id: sp.Symbol(p.id, positive=True) for p in stmt.params[1:]})
        if not self._shallow(stmt.body):
            self.broken_kernels.add(name)
            return
        body = self._formula(stmt.body, symbols)
        if body is not None and symbols["d2"] not in body.free_symbols:
            self.diags.error(
                "kernel-definition",
                f"kernel `{name}` does not depend on d2: its weights are the same for every "
                "pair, so q would not depend on the embeddings",
                stmt.body.span if hasattr(stmt.body, "span") else stmt.span,
                help=f"kernel {name}(d2, ...) = exp(-d2)",
            )
            body = None
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
            return None if inner is None or not self._count_operation(expr) else -inner
        if isinstance(expr, s.BinOp):
            left, right = self._formula(expr.left, symbols), self._formula(expr.right, symbols)
            if left is None or right is None:
                return None
            return self._combine(expr, left, right)
        if isinstance(expr, s.Call) and expr.func.id in _SYMPY_FUNCS and len(expr.args) == 1:
            inner = self._formula(expr.args[0], symbols)
            if inner is None or not self._count_operation(expr):
                return None
            return self._checked(_SYMPY_FUNCS[expr.func.id](inner), expr)
        span = getattr(expr, "span", None)
        self.diags.error(
            "kernel-definition",
            "a kernel formula uses numbers, its arguments, + - * / ^ and exp, log, sqrt, abs",
            span,
        )
        return None

    # -- numbers and hyperparameters -------------------------------------------------------
    def _shallow(self, expr: s.Expr) -> bool:
        """Is a formula of symbols nested at most MAX_FORMULA_DEPTH deep? False after an error:
        sympy's proofs and derivatives grow exponentially with the nesting of powers and
        functions ((((d2 + 1)^2 + 1)^2 ...) is a polynomial of degree 2^depth)."""
        depth = _depth(expr)
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
        if allow_hypers and _has_name(expr) and not self._shallow(expr):
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
            problem = _power_problem(left, right)
            if problem is not None:
                self.diags.error("number-size", problem, expr.span, limits.NUMBER_HELP)
                return None
        return self._checked(_arith(expr.op, left, right), expr)

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
                f"`{_short(s.print_expr(expr))}` is not a finite real number",
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
                    f"`{_short(s.print_expr(expr))}` is too {what} (about {_show_size(size)})",
                    expr.span,
                    limits.NUMBER_HELP,
                )
                return None
            if not value.is_Rational:
                # an irrational number (2^0.5) as 30 digits: towers of exact radicals cost
                # sympy time at every level
                return sp.Float(value.evalf(30), 30)
        else:
            degree = _degree(value)
            if degree > limits.MAX_DEGREE:
                self.diags.error(
                    "number-size",
                    f"the powers in this formula multiply to {_show_size(degree)}, more than "
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
        if not self._fixed_mapper_options(call, args):
            return None
        return self.ir.add(block.name, "mapper", call.span, args, text=s.print_expr(call))

    def _fixed_mapper_options(self, call: s.Call, args: dict[str, Any]) -> bool:
        """Mapper sizes are numbers: the mapper is built (build_mapper) before, and apart
        from, the loss that takes the hyperparameters."""
        ok = True
        block = reg.BLOCKS[call.func.id]
        given = [(arg.name, expr) for arg, expr in zip(block.args, call.args, strict=False)]
        given += [(keyword.name.id, keyword.value) for keyword in call.keywords]
        for name, expr in given:
            value = args.get(name)
            if isinstance(value, sp.Basic) and value.free_symbols:
                names = ", ".join(f"`{sym}`" for sym in sorted(value.free_symbols, key=str))
                self.diags.error(
                    "bad-argument",
                    f"mapper option {name} must be a number, not a hyperparameter ({names}): "
                    "the mapper is built apart from the loss",
                    getattr(expr, "span", call.span),
                    help=f"write a number, e.g. {name}=2",
                )
                ok = False
        return ok

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
        before, self.mixture_terms = self.mixture_terms, self.mixture_terms + len(terms)
        if self.mixture_terms > limits.MAX_TERMS:
            if before > limits.MAX_TERMS:
                return None  # reported at the mixture that passed the limit
            together = "" if self.mixture_terms == len(terms) else " (all mixtures together)"
            self.diags.error(
                "too-many-terms",
                f"{self.mixture_terms} mixture terms{together}, more than the limit of "
                f"{limits.MAX_TERMS}",
                getattr(expr, "span", None),
                "the checker proves the weights of each term: use fewer",
            )
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
        if block.variadic:
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
        # a user kernel's arguments are widths like sigma: the logit scale stays finite
        params += [Arg(name, "real", reg.REQUIRED, reg.WIDTH) for name in kernel.params]
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
            block.cross_modal,
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


def _depth(expr: s.Expr) -> int:
    """Nesting of operations and calls in an expression (a name or number is 0)."""
    if isinstance(expr, s.BinOp):
        return 1 + max(_depth(expr.left), _depth(expr.right))
    if isinstance(expr, s.Neg):
        return 1 + _depth(expr.operand)
    if isinstance(expr, s.Call):
        inner = [*expr.args, *(k.value for k in expr.keywords)]
        return 1 + max((_depth(a) for a in inner), default=0)
    return 0


def _degree(expr: sp.Expr) -> float:
    """How far the powers of a formula multiply, like a polynomial's degree: d2 is 1,
    (d2 + 1)^3 is 3, ((d2 + 1)^2 + 1)^2 is 4, d2 * exp(-d2^2) is 3."""
    if expr.is_Atom:
        return 1.0 if expr.free_symbols else 0.0
    if isinstance(expr, sp.Pow) and expr.exp.is_number:
        return _degree(expr.base) * max(1.0, abs(float(expr.exp)))
    if isinstance(expr, sp.Mul):
        return float(sum(_degree(a) for a in expr.args))
    return max(_degree(a) for a in expr.args)


def _has_name(expr: s.Expr) -> bool:
    if isinstance(expr, s.Name):
        return True
    if isinstance(expr, s.BinOp):
        return _has_name(expr.left) or _has_name(expr.right)
    if isinstance(expr, s.Neg):
        return _has_name(expr.operand)
    return False


def _power_problem(base: sp.Expr, exponent: sp.Expr) -> str | None:
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


def _show_size(value: Any) -> str:
    """A number as short text, whatever its size: 65536, 0.25, 10^600, 10^-320."""
    value = sp.Abs(sp.sympify(value)).evalf(20) if isinstance(value, sp.Basic) else abs(value)
    if value == 0:
        return "0"
    exponent = float(sp.log(value, 10).evalf(20))
    if abs(exponent) >= 15:
        return f"10^{round(exponent)}"
    f = float(value)
    return repr(int(f)) if f == int(f) else f"{f:.3g}"


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


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
    if not math.isfinite(f):
        return str(value)  # nan, zoo (1/0), oo
    return repr(int(f)) if f == int(f) else repr(f)


def lower(spec: s.Spec, diags: Diagnostics, default_name: str = "method") -> IR | None:
    """Lower a parsed spec; errors go to `diags`."""
    return Lowerer(diags, default_name).run(spec)
