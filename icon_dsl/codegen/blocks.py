"""The row-block forward (`compile --normaliser exact`): the neighbour loss a block of rows at a
time, for batches too large for an N x N matrix.

Takes: a checked IR and its Emitter after p and q are lowered. Guarantees: the block forward
only where each row's p and q are computed from that row alone against the columns (a fixed p
and a kernel q of f(x), both normalised per row), so it equals the dense forward; elsewhere a
located error that says why.
"""

from __future__ import annotations

from typing import Any

from ..diagnostics import Diagnostics, SpecError
from ..ir import IR
from .layout import call, fits
from .strategies import REPLICATED_OPS, fixed_key_lines, has_neighbour_path, q_kernel_node
from .values import words

#: The ways the generated `forward` can take q's normaliser (the compiler's --normaliser).
NORMALISERS = ("dense", "exact")


def refuse_blocks(ir: IR) -> None:
    """A located error unless the spec's forward can run in row blocks."""
    why = block_refusal(ir)
    if why is None:
        return
    node, text = why
    diags = Diagnostics(ir.source)
    diags.error(
        "normaliser",
        f"--normaliser exact cannot compute this loss in row blocks: {text}",
        ir.span(node),
        help="compile it with the default --normaliser dense",
    )
    raise SpecError(ir.source, diags.items)


def block_refusal(ir: IR) -> tuple[int, str] | None:
    """(the node to point at, why) when rows cannot be computed block by block."""
    for node in ir.graph.nodes:
        if ir.op(node) in REPLICATED_OPS:
            return node, f"{ir.op(node)}(...) reads every row of the batch to give one row"
    q_root = ir.roots["q"]
    if not has_neighbour_path(ir):
        kernel = q_kernel_node(ir)
        return q_root, (
            f"the blocks serve a fixed p against a kernel of f(x) under kl (t-SNE, SNE); "
            f"this spec's q is {ir.text(kernel)} against p = {ir.text(ir.roots['p'])}"
        )
    return None


def block_plan(
    p_lines: list[str],
    p_kind: str,
    p_var: str,
    keep: str | None,
    calibrations: list[tuple[str, str, str]],
    inputs: list[str],
    hypers: list[str],
) -> dict[str, Any]:
    """`_block_rows`: p's own lines (not cached: each block is recomputed in the backward), then
    p as probabilities for the closed-form neighbour rows of that block. A perplexity search
    runs once per block and call: its betas are kept in `betas` (`_calibrated`), which the
    backward's recomputation and, with cache_p, later calls on the same inputs read."""
    to_probabilities = {
        "logprob": f"p = {p_var}.exp().to(z.dtype)",
        "prob": f"p = {p_var}.to(z.dtype)",
        "mask": f"p = _uniform_rows({p_var}, z.dtype)",
    }[p_kind]
    body = p_lines
    for k, calibration in enumerate(calibrations):
        body = _remembered(body, k, *calibration)
    used = words(p_lines)
    diag = ["diag = _diagonal(z.shape[0], z_all.shape[0], offset, z.device)"]
    return {
        "inputs": [n for n in inputs if n in used or f"{n}_all" in used],
        "body": [*(diag if "diag" in used else []), *body, to_probabilities],
        "keep": keep,
        "calibrations": bool(calibrations),
        "key": fixed_key_lines(p_lines, inputs, hypers),
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
            code = call("_calibrated", args, 8, beta)
            out += [part.removeprefix(" " * 8) for part in code.splitlines()]
            out.append(line.replace(search, beta))
    return out
