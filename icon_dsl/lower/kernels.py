"""User kernels: `kernel name(d2, ...) = formula` definitions and their calls."""

from __future__ import annotations

from typing import Any

import sympy as sp

from .. import registry as reg
from .. import syntax as s
from ..ir import DistType, UserKernel
from ..registry import Arg
from .calls import CallLowerer, default
from .names import did_you_mean


class KernelLowerer(CallLowerer):
    """A kernel definition as sympy (built node by node), and a call of it as an IR node."""

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
        if (
            isinstance(expr, s.Call)
            and expr.func.id in reg.KERNEL_FUNCTIONS
            and len(expr.args) == 1
        ):
            inner = self._formula(expr.args[0], symbols)
            if inner is None or not self._count_operation(expr):
                return None
            return self._checked(reg.KERNEL_FUNCTIONS[expr.func.id](inner), expr)
        span = getattr(expr, "span", None)
        self.diags.error(
            "kernel-definition",
            "a kernel formula uses numbers, its arguments, + - * / ^ and exp, log, sqrt, abs",
            span,
        )
        return None

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
                args[arg.name] = default(arg)
        if not ok or kid is None:
            return None
        learned = self._learned(kid)
        t = DistType("pairs", None, bool(args["diagonal"]), "raw", learned, True, False)
        return self.ir.add("kernel", t, call.span, args, [kid], text=s.print_expr(call))
