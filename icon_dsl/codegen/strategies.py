"""The forms `forward` takes beyond autograd's general one, and what every form shares.

Takes: a checked IR and its Emitter after p and q are lowered. Guarantees: the contrastive fast
path (group sums in blocks, no N x N p) and the closed-form neighbour cross-entropy only where
they equal the general form; the fixed-p cache only where p reads inputs alone; columns gathered
across processes under torch.distributed (the whole batch replicated where a block needs it).
"""

from __future__ import annotations

import re
from typing import Any

from .. import registry as reg
from ..ir import IR, DistType
from . import names
from .kernels import gaussian_width, kernel_lines
from .layout import assignment_lines, fits
from .nodes import Emitter
from .values import words

# Blocks whose value for a row needs the rows of every process: a distributed run gathers the
# whole batch and every process computes the full loss (replicated) instead of its own rows.
REPLICATED_OPS = ("walk", "joint")


def gather_lines(
    inputs: list[str],
    replicated: bool,
    needs_diag: bool,
    body: list[str],
    p_only: bool = False,
) -> list[str]:
    """The top of `_terms` (or of `_p_terms` with p_only: z is not gathered there, its
    columns are world * n): columns are the whole batch, across processes when distributed."""
    text = "\n".join(body)
    names_ = ["z", *inputs]
    if not replicated:
        names_ = [n for n in names_ if f"{n}_all" in text or (n == "z" and needs_diag)]
    if p_only:
        names_ = [n for n in names_ if n != "z"]
    lines = ["# columns: the whole batch, gathered across processes under torch.distributed"]
    uses_offset = needs_diag or replicated or p_only or bool(re.search(r"\boffset\b", text))
    target = "world, offset" if uses_offset else "world, _"
    lines.append(f"{target} = _world(gather, z.shape[0])")
    if needs_diag and p_only and replicated:  # z is not gathered here: count its rows
        lines.append("n_all = world * z.shape[0]")
    lines += [f"{n}_all = _gather({n}, world)" for n in names_]
    if replicated:
        lines.append("# this objective needs every row: each process computes the full loss")
        if names_:
            lines.append(f"{', '.join(names_)} = {', '.join(n + '_all' for n in names_)}")
        lines.append("world, offset = 1, 0")
    if needs_diag and p_only and replicated:
        lines.append("diag = _diagonal(n_all, n_all, offset, z.device)")
    elif needs_diag:
        columns = "world * z.shape[0]" if p_only else "z_all.shape[0]"
        lines.append(f"diag = _diagonal(z.shape[0], {columns}, offset, z.device)")
    return lines


# -- the fixed-p cache ---------------------------------------------------------------------
def can_cache_p(
    pt: DistType, e: Emitter, p_lines: list[str], q_lines: list[str], p_names: set[str]
) -> bool:
    """Is p worth keeping between calls? It must not depend on f(x) or prototypes, have work to
    save (lines of its own), read no graph buffer (compared by value it would cost as much as
    it saves), share no variable with q's lines, and be read by the training loss (the
    contrastive fast path never builds p: only divergence and distributions would use it)."""
    code = [line for line in p_lines if not line.startswith("#")]
    # inside the cache's `if`, p's lines move 4 columns right: they must still fit
    fits_inside = all(fits(line, 12) for line in code)
    return (
        not pt.learned
        and not has_fast_path(e.ir)
        and bool(code)
        and fits_inside
        and not e.graph
        and not (words(q_lines) & p_names)
    )


def fixed_key_lines(
    p_lines: list[str], inputs: list[str], hypers: list[str], indent: int = 8
) -> list[str]:
    """`fixed_key = (...)`: what p's lines read (the inputs' columns, the hyperparameters) and
    the batch's layout; equal keys give the same p."""
    used = words(p_lines)
    # an input's local rows are rows offset.. of its gathered columns: the columns suffice
    key = [
        f"{name}_all" if f"{name}_all" in used else name
        for name in inputs
        if name in used or f"{name}_all" in used
    ]
    key += [f"self.{h}" for h in hypers if f"self.{h}" in used]
    key += ["offset", "z.shape[0]", "z.dtype", "z.device"]
    one_line = f"fixed_key = ({', '.join(key)})"
    if fits(one_line, indent):
        return [one_line]
    return ["fixed_key = (", *(f"    {k}," for k in key), ")"]  # as ruff format lays it out


def cached_p_lines(
    p_lines: list[str], p_expr: str, p_keep: str | None, inputs: list[str], hypers: list[str]
) -> list[str]:
    """p's lines wrapped in the fixed-p cache: p reads only inputs, so while they (and the
    hyperparameters it uses) are exactly equal to the last call's, the last p is reused."""
    return [
        "# p reads only the inputs: reuse the last p while they are exactly equal (cache_p)",
        *fixed_key_lines(p_lines, inputs, hypers),
        "fixed = self._cached_p(fixed_key)",
        "if fixed is None:",
        *(f"    {line}" for line in p_lines),
        f"    p, p_keep = {p_expr}, {p_keep or 'None'}",
        "    fixed = self._remember_p(fixed_key, p, p_keep)",
        "p, p_keep = fixed",
    ]


# -- the contrastive fast path -------------------------------------------------------------
def has_fast_path(ir: IR) -> bool:
    """Is the spec in the contrastive family that `forward` lowers to group sums (and blocks)?"""
    p_root, q_root = ir.roots["p"], ir.roots["q"]
    q_args = ir.args(q_root)
    return not (
        ir.op(ir.roots["loss"]) != "kl"
        or ir.op(p_root) not in ("label", "augmentation")
        or ir.op(q_root) != "gaussian"
        or len(ir.children(q_root)) != 1
        or ir.op(ir.children(q_root)[0]) != "f"
        or "perplexity" in q_args
        or q_args.get("diagonal")
    )


def fast_forward(ir: IR, e: Emitter) -> dict[str, list[str]] | None:
    """The contrastive fast path, or None when the spec is not of that family: the bodies of
    `_logits` (q as two factors), `_terms` (p and log q from them) and `forward`.

    An indicator p over groups (same label, same sample) against a Gaussian q on f(x) has
    logits s_ij = a_i . b_j (the row constant of -d2 / 2 sigma^2 cancels in the loss),
    so the cross-entropy is logsumexp_j s_ij minus the mean of s_ij over i's group, and the
    group mean is a sum of vectors: no N x N p, mask or log q is materialised.
    """
    if not has_fast_path(ir):
        return None
    p_root, q_root = ir.roots["p"], ir.roots["q"]
    q_args = ir.args(q_root)
    key = ir.args(ir.children(p_root)[0])["name"]
    sigma2 = e.num(gaussian_width(q_args))
    metric = q_args["metric"]
    logits = [
        "z = _at_least_float32(z)",
        "world, offset = _world(gather, z.shape[0])",
        names.comment(f"q = {e.text(q_root)}: s_ij = a_i . b_j"),
    ]
    if metric == "euclidean":
        logits += [
            *assignment_lines("sigma2", sigma2, 8),
            "z_all = _gather(z, world)",
            "# -d2 / 2 sigma^2 = z_i . z_j / sigma^2 - |z_j|^2 / 2 sigma^2 + (row i's constant):",
            "# b_j carries -|z_j|^2 / 2 sigma^2 as one more coordinate, a_i a 1 there",
            "a = torch.cat([z / sigma2, torch.ones_like(z[:, :1])], dim=1)",
            "half_sq = (z_all * z_all).sum(1, keepdim=True) / (2 * sigma2)",
            "b = torch.cat([z_all, -half_sq], dim=1)",
        ]
    else:
        if metric == "cosine":
            logits += ["u = F.normalize(z, dim=1)  # -d2 / 2 sigma^2 = (cos - 1) / sigma^2"]
        else:
            logits += ["u = z"]
        logits += [f"a, b = u / {sigma2}, _gather(u, world)"]
    logits += ["return a, b, _gather(keys, world), world, offset"]
    p_text = e.text(p_root)
    terms = [
        "if self.validate:",
        f'    _check_batch(z, {{"{key}": {key}}})',
        f"a, b, keys, world, offset = self._logits(z, {key}, gather)",
        names.comment(f"p = {p_text}: uniform over the other members of i's group"),
        f"p = {key}[:, None] == keys[None, :]",
        "p.diagonal(offset).fill_(False)",
        "log_q = torch.log_softmax(_block_logits(a, b, offset), dim=1)",
        "return p, log_q, p.any(1), world",
    ]
    forward = [
        "if self.validate:  # shapes now; NaN / inf in z shows in the loss, checked below",
        f'    _check_batch(z, {{"{key}": {key}}}, finite=False)',
        f"a, b, keys, world, offset = self._logits(z, {key}, self.gather)",
        names.comment(f"-sum_j p(j|i) log q(j|i) for p = {p_text}, without an N x N p"),
        "rows, keep = _contrastive_rows(a, b, keys, offset, self.block_size)",
        "if self.validate and not torch.isfinite(rows).all():",
        f'    _check_batch(z, {{"{key}": {key}}})',
        "return self._mean(rows, keep, world)",
    ]
    e.body.helpers.add("contrastive")
    return {"logits": logits, "terms": terms, "forward": forward}


# -- the closed-form neighbour path --------------------------------------------------------
def q_kernel_node(ir: IR) -> int:
    """q's kernel: q itself, or the kernel inside q = joint(kernel)."""
    q_root = ir.roots["q"]
    return ir.children(q_root)[0] if ir.op(q_root) == "joint" else q_root


def has_neighbour_path(ir: IR) -> bool:
    """Is forward the closed-form neighbour cross-entropy (`_NeighbourCrossEntropy`)?

    A fixed p against q = gaussian or student_t of f(x) over the other points (euclidean),
    both normalised per row or both jointly: t-SNE (both forms), SNE and their new neighbours.
    Everything else keeps autograd's form.
    """
    p_root, kernel = ir.roots["p"], q_kernel_node(ir)
    pt, q_args = ir.dist_type(p_root), ir.args(kernel)
    kids = ir.children(kernel)
    return not (
        ir.op(ir.roots["loss"]) != "kl"
        or pt.learned
        or pt.cross
        or ir.op(p_root) == "classes"
        or not reg.is_kernel(ir.op(kernel))
        or len(kids) != 1
        or ir.op(kids[0]) != "f"
        or "perplexity" in q_args
        or q_args.get("diagonal")
        or q_args.get("metric", "euclidean") != "euclidean"
        or has_fast_path(ir)
    )


def neighbour_plan(
    ir: IR,
    e: Emitter,
    inputs: list[str],
    p_lines: list[str],
    q_lines: list[str],
    p_needs_diag: bool,
    p_kind: str,
    replicated: bool,
) -> dict[str, Any]:
    """`_p_terms` (p alone, for forward) and the rest of `_terms`, split at q, plus q's kernel
    and its derivative for `_NeighbourCrossEntropy`."""
    kernel = q_kernel_node(ir)
    op, args = ir.op(kernel), ir.args(kernel)
    to_probabilities = {
        "logits": "p = p.exp().to(z.dtype)",
        "logprob": "p = p.exp().to(z.dtype)",
        "prob": "p = p.to(z.dtype)",
        "mask": "p = _uniform_rows(p, z.dtype)",
    }[p_kind]
    top = gather_lines(inputs, replicated, p_needs_diag, p_lines, p_only=True)
    diag = [line for line in top if line.startswith("diag = ")]
    if diag and "if fixed is None:" in p_lines:  # only a new p needs the diagonal mask
        top.remove(diag[0])
        at = p_lines.index("if fixed is None:") + 1
        p_lines = [*p_lines[:at], f"    {diag[0]}", *p_lines[at:]]
    if replicated:  # p covers every row: q does too, on every process
        columns = [
            "# this objective needs every row: each process computes the full loss",
            "processes, _ = _world(gather, z.shape[0])",
            "z = z_all = _gather(z, processes)",
        ]
    else:
        columns = ["z_all = _gather(z, world)"]
    return {
        "p_body": top + p_lines,
        "q_body": [
            *columns,
            "diag = _diagonal(z.shape[0], z_all.shape[0], offset, z.device)",
            *q_lines,
        ],
        "q_text": e.text(ir.roots["q"]),
        "kernel": kernel_lines(ir, op, args, "d2", e.num),
        "to_probabilities": to_probabilities,
        "replicated": replicated,
        "joint": ir.dist_type(ir.roots["p"]).normalised == "joint",
    }
