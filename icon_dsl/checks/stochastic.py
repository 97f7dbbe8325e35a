"""Row-stochasticity, proved with sympy by construction.

Guarantees: p and q are row-stochastic when built from normalised primitives, `normalize(...)`,
`debias(...)` and mixtures whose weights sympy proves nonnegative and summing to 1 under the
hyperparameters' domains; raw user-kernel weights are rejected unless normalised; a user kernel
must be provably nonnegative, and positive where q uses it. Proofs use targeted sympy calls
(cancel, minimum, assumptions), never a blanket simplify().
"""

from __future__ import annotations

import sympy as sp
from sympy.calculus.util import minimum

from ..diagnostics import Diagnostics
from ..ir import IR, Hyper
from ..registry import Domain
from ..syntax import Span


def check(ir: IR, diags: Diagnostics) -> None:
    negative = set()
    for kernel in ir.kernels.values():
        if not _nonnegative(kernel.weight, {}):
            negative.add(kernel.name)
            diags.error(
                "kernel-not-nonnegative",
                f"cannot prove kernel `{kernel.name}` nonnegative for d2 >= 0 and positive arguments",
                kernel.span,
                "weights must be >= 0: use exp(...), squares or 1 / (1 + ...)",
            )
    _check_q_kernels_positive(ir, diags, negative)
    for name in ("p", "q"):
        root = ir.roots[name]
        t = ir.dist_type(root)
        if t.normalised == "raw":
            span = ir.span(root)
            text = ir.text(root)
            diags.error(
                "not-row-stochastic",
                f"{name} must be row-stochastic, but {text} is raw weights",
                span,
                f"wrap it: normalize({text})",
            )
    for node in ir.graph.nodes:
        if ir.op(node) == "mixture":
            _check_mixture(ir, node, diags)


def _check_q_kernels_positive(ir: IR, diags: Diagnostics, negative: set[str]) -> None:
    """A user kernel in q must be positive: where it is 0, q(j|i) = 0 (an infinite KL where
    p has mass), and a row whose weights all vanish (coincident embeddings) is 0 / 0. One
    diagnostic per kernel: one that may be negative is reported above."""
    for node in ir.subtree(ir.roots["q"]):
        if ir.op(node) != "kernel":
            continue
        kernel = ir.kernels[ir.args(node)["kernel"]]
        if kernel.name not in negative and not kernel.weight.is_positive:
            diags.error(
                "kernel-not-positive",
                f"kernel `{kernel.name}` can be 0 (sympy cannot prove {kernel.weight} > 0 for "
                "d2 >= 0), so q can be 0 where p has mass, or 0 / 0 on a row",
                ir.span(node),
                "a kernel of f(x) needs a positive weight: exp(...), 1 / (1 + ...), "
                "or add a constant",
            )


def _check_mixture(ir: IR, node: int, diags: Diagnostics) -> None:
    weights: list[sp.Expr] = ir.args(node)["weights"]
    span = ir.span(node)
    domains = {h.name: h for h in ir.hypers.values()}
    total = sp.cancel(sp.together(sp.Add(*weights) - 1))
    if total != 0:
        diags.error(
            "mixture-weights",
            f"mixture weights sum to {_show(sp.Add(*weights))}, not 1",
            span,
            "make the weights sum to 1, e.g. a * d1 + (1 - a) * d2",
        )
    for w in weights:
        if not _nonnegative(w, domains):
            diags.error(
                "mixture-weights",
                f"cannot prove the mixture weight {_show(w)} nonnegative",
                span,
                _domain_help(w, domains),
            )


def _show(expr: sp.Expr) -> str:
    return f"{float(expr):g}" if expr.is_number else sp.sstr(expr)


def _domain_help(w: sp.Expr, hypers: dict[str, Hyper]) -> str:
    names = sorted(str(s) for s in w.free_symbols)
    if names and all(hypers[n].domain == Domain() for n in names if n in hypers):
        return f"declare the domain: param {names[0]} in [0, 1]"
    return "weights must be >= 0 for every allowed value of the hyperparameters"


def _nonnegative(expr: sp.Expr, hypers: dict[str, Hyper]) -> bool:
    """Prove expr >= 0 over the hyperparameters' domains (d2 >= 0, kernel args > 0)."""
    free = sorted(expr.free_symbols, key=str)
    if not free:
        return bool(expr.is_real and expr >= 0)
    if expr.is_nonnegative:
        return True
    # A single bounded hyperparameter: the exact minimum over its interval.
    if len(free) == 1 and str(free[0]) in hypers:
        dom = hypers[str(free[0])].domain
        interval = sp.Interval(dom.lo, dom.hi, dom.lo_open, dom.hi_open)
        try:
            low = minimum(expr, free[0], interval)
        except (NotImplementedError, ValueError):
            return False
        return bool(low.is_nonnegative)
    # Otherwise rewrite each bounded hyperparameter h in [lo, hi] through positive symbols and
    # ask sympy's assumptions.
    subs = {}
    for sym in free:
        h = hypers.get(str(sym))
        if h is None:
            continue
        subs[sym] = _through_positive(sym, h.domain)
    return bool(expr.subs(subs).is_nonnegative) if subs else False


def _through_positive(sym: sp.Symbol, dom: Domain) -> sp.Expr:
    t = sp.Symbol(f"{sym}_t", nonnegative=True)
    if dom.lo > -sp.oo and dom.hi < sp.oo:
        # h = lo + (hi - lo) * t / (1 + t) covers [lo, hi) for t >= 0
        return dom.lo + (dom.hi - dom.lo) * t / (1 + t)
    if dom.lo > -sp.oo:
        return dom.lo + t
    if dom.hi < sp.oo:
        return dom.hi - t
    return sym


__all__ = ["check", "Span"]
