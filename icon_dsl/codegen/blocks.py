"""The row-block forward (`compile --normaliser exact`): the loss a block of rows at a time, for
batches too large for an N x N matrix.

Takes: a checked IR and its Emitter after p and q are lowered. Guarantees: the block forward
only where each row's p and q are computed from that row alone against the columns (the
neighbour specs, with their closed-form rows; clustering heads and the other N x N specs, in
autograd's form), so it equals the dense forward; elsewhere a located error that says why.
"""

from __future__ import annotations

from typing import Any

from .. import large_data
from ..diagnostics import Diagnostics, SpecError
from ..ir import IR
from .layout import call_lines, fits
from .nodes import Emitter
from .strategies import REPLICATED_OPS, fixed_key_lines, has_fast_path, has_neighbour_path
from .values import words

#: The ways the generated `forward` can take q's normaliser (the compiler's --normaliser).
NORMALISERS = ("dense", "exact", "sampled")


def refuse_blocks(ir: IR, normaliser: str = "exact") -> None:
    """A located error unless the spec's forward can run in row blocks (and, for "sampled",
    keep p's nearest neighbours and sample q's normaliser)."""
    why = block_refusal(ir) or (sampled_refusal(ir) if normaliser == "sampled" else None)
    if why is None:
        return
    node, text = why
    dense = "compile it with the default --normaliser dense"
    diags = Diagnostics(ir.source)
    diags.error(
        "normaliser",
        f"--normaliser {normaliser} does not apply to this loss: {text}",
        ir.span(node),
        help=f"{dense} and pass block_size to the module" if has_fast_path(ir) else dense,
    )
    raise SpecError(ir.source, diags.items)


def sampled_refusal(ir: IR) -> tuple[int, str] | None:
    """(the node to point at, why) when q's normaliser cannot be sampled over a sparse p."""
    if not has_neighbour_path(ir):
        return ir.roots["q"], (
            "a sampled normaliser serves a fixed p against a kernel of f(x) under kl (t-SNE, SNE)"
        )
    why = large_data.sparse_p_reason(ir)
    if why is not None:
        return ir.roots["p"], (
            f"p must keep each row's nearest neighbours (a perplexity gaussian or a knn of "
            f"x): {why}"
        )
    return None


def neighbours_code(ir: IR, e: Emitter) -> str:
    """Code for the neighbours a sampled module keeps per row of p: 3 x perplexity (openTSNE's
    and scikit-learn's Barnes-Hut rule) or knn's k."""
    args = ir.args(ir.roots["p"])
    if "perplexity" in args:
        return f"math.ceil({large_data.PERPLEXITY_NEIGHBOURS:g} * {e.num(args['perplexity'])})"
    return e.num(args["k"])  # an integer (a literal or an int hyperparameter)


def block_refusal(ir: IR) -> tuple[int, str] | None:
    """(the node to point at, why) when rows cannot be computed block by block."""
    for node in ir.graph.nodes:
        if ir.op(node) in REPLICATED_OPS:
            return node, f"{ir.op(node)}(...) reads every row of the batch to give one row"
    if has_fast_path(ir):
        return ir.roots["q"], "the contrastive family's modules have row blocks of their own"
    for name in ("p", "q"):
        if ir.dist_type(ir.roots[name]).support != "pairs":
            return ir.roots[name], f"{name} is N x n, not N x N: there is no N x N matrix to split"
    return None


def block_plan(
    lines: list[str],
    p_kind: str,
    p_var: str,
    keep: str | None,
    e: Emitter,
    inputs: list[str],
    calibrations: list[tuple[str, str, str]],
) -> dict[str, Any]:
    """`_block_rows`'s body: the lines of p (neighbour specs: the closed-form rows follow in the
    template) or of p, q and log q (the rest: the divergence's rows follow), not cached, since
    each block is recomputed in the backward. A perplexity search runs once per block and call:
    its betas are kept in `betas` (`_calibrated`), which the backward's recomputation and, with
    cache_p, later calls on the same inputs read (p's searches only: q's read z)."""
    if has_neighbour_path(e.ir):
        tail = {
            "logprob": f"p = {p_var}.exp().to(z.dtype)",
            "prob": f"p = {p_var}.to(z.dtype)",
            "mask": f"p = _uniform_rows({p_var}, z.dtype)",
        }[p_kind]
    else:
        tail = "" if p_var == "p" else f"p = {p_var}"
    body = lines
    for k, calibration in enumerate(calibrations):
        body = _remembered(body, k, *calibration)
    used = words([*lines, tail])
    diag = ["diag = _diagonal(z.shape[0], z_all.shape[0], offset, z.device)"]
    return {
        "inputs": [n for n in inputs if n in used or f"{n}_all" in used],
        "body": [*(diag if "diag" in used else []), *body, *([tail] if tail else [])],
        "keep": keep,
        "calibrations": bool(calibrations),
        "key": fixed_key_lines(lines, inputs, list(e.hyper_names.values())),
    }


def _remembered(lines: list[str], k: int, search: str, d2: str, perplexity: str) -> list[str]:
    """The lines with the k-th perplexity search read from `betas` (one line where it fits)."""
    args = ["betas", str(k), "offset", d2, perplexity, "diag"]
    remembered = f"_calibrated({', '.join(args)})"
    out = []
    for line in lines:
        if search not in line:
            out.append(line)
        elif fits(line.replace(search, remembered), 8):
            out.append(line.replace(search, remembered))
        else:  # the betas on a line of their own
            beta = f"beta{k}"
            out += [*call_lines("_calibrated", args, beta), line.replace(search, beta)]
    return out
