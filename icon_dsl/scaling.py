"""Which numbers of a spec a rescaling of f(x) absorbs, proved with sympy.

A mapper whose last operation is linear (a table, a linear map, an MLP) can multiply its output
by any c > 0, and learned prototypes can too. A kernel over f(x) then sees d2 -> lambda * d2
(lambda = c^2 for euclidean distances, c for dot products). If the kernel's weight at
(lambda * d2, width') equals its weight at (d2, width) for a width' that depends on lambda only,
the width is not part of the objective: every value of it is the same method. Cosine distances
and L2-normalised or softmax outputs do not scale, so nothing is absorbed there.

Takes: a checked IR (or a block name). Guarantees: `absorbed_width(block, arg)` returns the sympy
identity that proves the arg absorbable (as text), or None when sympy cannot prove it;
`scale_free_kernels(ir)` lists the kernels over f(x) whose width a rescaling absorbs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from . import registry as reg
from .ir import IR

#: Metrics under which a rescaling of f(x) multiplies d2 by a positive factor.
SCALED_METRICS = ("euclidean", "dot")
#: The widths a kernel may take, with how they enter the kernel: sigma = width ** power / 2.
_WIDTHS = {"sigma": 1, "scale": 1, "temperature": 2}


@dataclass(frozen=True)
class ScaleFree:
    """A kernel over f(x) whose width `arg` a rescaling of f(x) absorbs (`proof`: sympy's)."""

    node: int
    op: str
    arg: str
    value: float
    proof: str


@cache
def absorbed_width(block_name: str, arg: str) -> str | None:
    """The identity w(lambda d2; arg * lambda^(k/2)) = w(d2; arg), proved by sympy, or None."""
    block = reg.BLOCKS.get(block_name)
    if block is None or block.log_weight is None or arg not in _WIDTHS:
        return None
    if block.arg(arg) is None:
        return None
    lam = sp.Symbol("lambda", positive=True)
    d2 = sp.Symbol("d2", nonnegative=True)
    syms = {a.name: sp.Symbol(a.name, positive=True) for a in block.args if a.kind == "real"}
    if arg == "temperature":  # the Gaussian's sigma is sqrt(temperature)
        syms["sigma"] = sp.sqrt(syms["temperature"])
    power = _WIDTHS[arg]
    scaled = dict(syms)
    width = sp.Symbol(arg, positive=True)
    scaled[arg] = width * lam ** sp.Rational(power, 2)
    if arg == "temperature":
        scaled["sigma"] = sp.sqrt(scaled["temperature"])
    try:
        before = block.log_weight(d2, syms)
        after = block.log_weight(lam * d2, scaled)
    except KeyError:
        return None
    if sp.simplify(after - before) != 0:
        return None
    factor = "lambda" if power == 2 else "sqrt(lambda)"
    return f"sympy: log w(lambda*d2; {arg}*{factor}) - log w(d2; {arg}) = 0"


def mapper_scales(ir: IR) -> bool:
    """Can the mapper multiply its output by any c > 0 (its last operation is linear)?"""
    mapper = ir.roots["mapper"]
    block = reg.BLOCKS.get(ir.op(mapper))
    if block is None or block.role != "mapper":
        return False
    args = ir.args(mapper)
    return not args.get("softmax") and not args.get("sphere")


def scale_free_kernels(ir: IR) -> list[ScaleFree]:
    """The kernels over f(x) in q whose width a rescaling of f(x) (and prototypes) absorbs."""
    if not mapper_scales(ir):
        return []
    out = []
    for node in ir.subtree(ir.roots["q"]):
        op = ir.op(node)
        args = ir.args(node)
        if not any(ir.op(child) == "f" for child in ir.children(node)):
            continue
        if args.get("metric", "euclidean") not in SCALED_METRICS or "perplexity" in args:
            continue
        for arg in _WIDTHS:
            if arg in args and (proof := absorbed_width(op, arg)) is not None:
                out.append(ScaleFree(node, op, arg, float(args[arg]), proof))
    return out


def is_scale_free(ir: IR, node: int) -> bool:
    """Is `node` a kernel over f(x) whose width a rescaling absorbs?"""
    return any(k.node == node for k in scale_free_kernels(ir))
