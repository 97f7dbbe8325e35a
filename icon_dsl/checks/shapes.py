"""Shapes and the diagonal: p and q must be distributions over the same support.

Guarantees: an error when p is N x N and q N x n (or the n differ), and when the diagonal makes
the divergence infinite: under kl, p may not put mass on j = i where q excludes it (uniform mass on
an excluded diagonal); under reverse_kl, the same with p and q swapped. A p that excludes j = i
against a q that includes it (InfoNCE clustering against the cluster kernel) is sound under kl.
"""

from __future__ import annotations

import sympy as sp

from .. import registry as reg
from ..diagnostics import Diagnostics
from ..ir import IR


def check(ir: IR, diags: Diagnostics) -> None:
    p, q = ir.dist_type(ir.roots["p"]), ir.dist_type(ir.roots["q"])
    span = ir.span(ir.roots["q"])
    if p.support != q.support or (p.support == "columns" and p.columns != q.columns):
        diags.error(
            "shape-mismatch",
            f"p is {p.describe_support()} but q is {q.describe_support()}: "
            "they must be distributions over the same support",
            span,
            "use classes(y, n) against prototypes(n) with the same n, or pairwise kernels on both sides",
        )
        return
    if (p.normalised == "joint") != (q.normalised == "joint"):
        diags.error(
            "joint-mismatch",
            "joint() normalises over the whole matrix: p and q must both be joint or both not",
            span,
            "wrap both sides: p = joint(...), q = joint(...)",
        )
        return
    if p.cross and not q.cross and not _from_weights(ir, ir.roots["q"]):
        diags.error(
            "shape-mismatch",
            "a cross-modal p restricts q to the other modality, which needs a kernel q "
            f"({_weight_blocks()})",
            span,
        )
    divergence = reg.BLOCKS[ir.op(ir.roots["loss"])]
    if divergence.mass_from == "q" and not full_support(ir, ir.roots["p"]):
        diags.error(
            "infinite-divergence",
            "reverse_kl(p, q) = KL(q || p) is infinite: q puts mass where this p is zero",
            ir.span(ir.roots["p"]),
            "use a p with full support (a gaussian or student_t kernel, or debias(...)), "
            "or kl(p, q)",
        )
        return
    source, target = (q, p) if divergence.mass_from == "q" else (p, q)
    if p.support == "pairs" and source.diagonal and not target.diagonal:
        diags.error(
            "diagonal-mismatch",
            f"p is over {p.describe_support()} but q over {q.describe_support()}",
            span,
            "the divergence is infinite where one side has mass at j = i and the other excludes it; "
            "pass the same diagonal= to both (k-means-style specs include j = i on both sides)",
        )


def _block(ir: IR, node: int) -> reg.Block | None:
    """The registry block a node calls (None for inputs, user kernels, mixtures)."""
    return reg.BLOCKS.get(ir.op(node))


def _from_weights(ir: IR, node: int) -> bool:
    """Is the distribution normalised from positive weights per row (so it can be restricted
    to any support, such as the other modality, before normalising)?"""
    block = _block(ir, node)
    return block is not None and block.role == "distribution" and block.rep == "logits"


def _weight_blocks() -> str:
    """`gaussian, student_t or normalize(...)`: the blocks a cross-modal p accepts as q."""
    weights = [b for b in reg.blocks("distribution") if b.rep == "logits"]
    names = [b.name for b in weights if b.is_kernel]
    names += [f"{b.name}(...)" for b in weights if not b.is_kernel]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _positive_kernel(ir: IR, node: int) -> bool:
    """Is node `normalize(k(...))` of a user kernel that is provably positive?"""
    kids = ir.children(node)
    if ir.op(node) != "normalize" or len(kids) != 1 or ir.op(kids[0]) != "kernel":
        return False
    return bool(ir.kernels[ir.args(kids[0])["kernel"]].weight.is_positive)


def full_support(ir: IR, node: int) -> bool:
    """Is the distribution nonzero everywhere on its support (so KL(q || p) stays finite)?"""
    op, kids = ir.op(node), ir.children(node)
    block = _block(ir, node)
    if block is not None and block.full_support or _positive_kernel(ir, node):
        return True
    if op == "debias":
        return _positive(ir, ir.args(node)["alpha"]) or full_support(ir, kids[0])
    if op == "mixture":
        # the weights sum to 1, so if every component is full, the mixture is; otherwise one
        # full component needs a weight that is never 0
        weights = ir.args(node)["weights"]
        full = [full_support(ir, k) for k in kids]
        return all(full) or any(_positive(ir, w) and f for w, f in zip(weights, full, strict=True))
    if op == "joint":
        return full_support(ir, kids[0])
    return False


def _positive(ir: IR, value: sp.Expr) -> bool:
    """Provably > 0 for every allowed value of the hyperparameters."""
    if value.is_number:
        return bool(value > 0)
    if value.is_Symbol and str(value) in ir.hypers:
        dom = ir.hypers[str(value)].domain
        return dom.lo > 0 or (dom.lo == 0 and dom.lo_open)
    return False
