"""The loss's predicted peak memory, and this machine's: for `icon-dsl explain` and for training,
which refuses a whole-data dense loss that cannot fit before building it."""

from __future__ import annotations

import os

from .codegen.blocks import block_refusal
from .codegen.strategies import has_fast_path
from .ir import IR

# Live N x M tensors at the loss's peak (forward and backward), counted from what the generated
# code keeps: the fast path holds the logits, their log-softmax and the gradient; the dense path
# also d2, the masked logits and p. benchmarks/losses.py measures the real peaks.
FAST_MATRICES, DENSE_MATRICES = 3, 6
BLOCK_SIZE_DEFAULT = 1024
# A perplexity p's search holds N x M float64 copies: benchmarks/blocks.py measured t-SNE's first
# step at 936 and 3,720 MiB (N = 4,096 and 8,192: 14.5 float32 matrices) and, compiled with
# --normaliser exact, 242 and 474 MiB in blocks of 1,024 (at most 15 float32 block x N
# matrices; k-means 191 and 368 MiB).
PERPLEXITY_MATRICES, BLOCK_MATRICES = 15, 15


def memory_estimate(ir: IR, batch: int, bytes_per_value: int = 4) -> dict[str, float | None]:
    """Predicted peak bytes of the loss at batch size N for dense and block modes."""
    p = ir.dist_type(ir.roots["p"])
    columns = batch if p.support == "pairs" else None
    if columns is None:
        return {"dense": None, "block": None}  # N x n prototypes: memory is linear in N
    fast = has_fast_path(ir)
    perplexity = any("perplexity" in ir.args(node) for node in ir.graph.nodes)
    matrices = FAST_MATRICES if fast else PERPLEXITY_MATRICES if perplexity else DENSE_MATRICES
    dense = float(matrices * batch * columns * bytes_per_value)
    rows = min(batch, BLOCK_SIZE_DEFAULT) * columns * bytes_per_value
    if fast:
        block: float | None = float(2 * rows)
    elif block_refusal(ir) is None:  # one block is the dense form
        block = min(dense, float(BLOCK_MATRICES * rows))
    else:
        block = None
    return {"dense": dense, "block": block}


def physical_memory() -> float | None:
    """This machine's memory in bytes, or None where the system does not say."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None
