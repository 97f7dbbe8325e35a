"""Distributions: p and q, block calls, mixtures and unions, and the type of each node."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import sympy as sp

from .. import limits
from .. import registry as reg
from .. import syntax as s
from ..ir import DistType
from ..registry import Block
from .calls import default
from .kernels import KernelLowerer
from .names import as_call, did_you_mean

_DATA_ADVICE = {
    "y": "label(y) or classes(y, n)",
    "index": "augmentation(index)",
    "modality": "cross_modal(index, modality)",
    "f": "gaussian(f(x))",
}


class DistributionLowerer(KernelLowerer):
    """An expression that must denote a distribution, lowered to a typed IR node."""

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
        call = as_call(expr)
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
                    args[arg.name] = default(arg)
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
