"""Which specs `icon-dsl train` fits on the whole of a large data set, and how (IR rules only).

Takes a checked IR. Guarantees: the answers `train` acts on (train/plan.py), `explain` reports
and the generated modules' docstrings state come from these functions and constants alone, so the
three never disagree. Two whole-data paths exist (docs/performance.md, "Large data"):

- neighbour embeddings: a table mapper, the closed-form neighbour loss, and a p built from
  perplexity ``gaussian``, ``knn``, ``walk`` and ``joint`` over them: p on each row's nearest
  neighbours, computed once (train/sparse_p.py, train/sparse.py);
- clustering heads: a softmax head against ``cluster(f(x))`` (or its ``debias``), with
  ``reverse_kl`` against a fixed-width gaussian p or ``kl`` against a sparse p
  (train/cluster.py).

No torch here: codegen and explain import this module.
"""

from __future__ import annotations

import textwrap

from .ir import IR

#: Up to this many rows a table neighbour spec trains full-batch on the generated forward.
FULL_BATCH_LIMIT = 4096
#: Neighbours kept per perplexity row: 3 x perplexity (openTSNE, scikit-learn's Barnes-Hut).
PERPLEXITY_NEIGHBOURS = 3.0
#: Negative samples per row of the sampled normaliser of a neighbour embedding.
NEIGHBOUR_NEGATIVES = 64
#: Columns per row and epoch of the sampled sums over pairs of a clustering head.
CLUSTER_NEGATIVES = 32
#: Above this many rows `auto` samples (both paths): the exact row blocks cost O(N^2) an epoch.
EXACT_LIMIT = 8192
#: Fractions of the epochs after which the weaker half of the starts side by side stops, on
#: the whole-data clustering path (successive halving; train/side_by_side.py).
HALVING_AT = (0.1, 0.3)
#: Embedding dimensions whose normaliser the grid of train/interpolate.py can sum.
INTERPOLATED_DIMS = (1, 2)


def halving_epochs(epochs: int) -> set[int]:
    """The epochs after which the weaker half of the running starts stops (``HALVING_AT``)."""
    return {e for f in HALVING_AT if 1 <= (e := round(f * epochs)) < epochs}


def start_epochs(starts: int, until: int, halving: set[int]) -> int:
    """The epochs of all starts together in epochs 0..until when the running starts halve
    (rounded up) after each epoch of ``halving``."""
    total, running, last = 0, starts, 0
    for epoch in sorted(e for e in halving if e < until):
        total += running * (epoch - last)
        running, last = -(-running // 2), epoch
    return total + running * (until - last)


def choose_normaliser(n: int, interpolated: bool = False) -> str:
    """What `auto` picks for a whole-data run on n rows: exact row blocks up to EXACT_LIMIT;
    above, kernel sums on an interpolation grid where ``interpolates`` (train/interpolate.py),
    else samples."""
    if n <= EXACT_LIMIT:
        return "exact"
    return "interpolated" if interpolated else "sampled"


def embedding_dim(ir: IR) -> int:
    """The mapper's output dimension (lowering fills in its default)."""
    return int(float(ir.args(ir.roots["mapper"])["dim"]))


def interpolates(ir: IR) -> bool:
    """Whether q's normaliser can be summed on a grid of the embedding: 1 or 2 dimensions."""
    return embedding_dim(ir) in INTERPOLATED_DIMS


# -- neighbour embeddings ---------------------------------------------------------------------
def sparse_p_reason(ir: IR) -> str | None:
    """Why p cannot be built on nearest neighbours (None when it can)."""
    return p_node_reason(ir, ir.roots["p"])


def p_node_reason(ir: IR, node: int) -> str | None:
    op, args, kids = ir.op(node), ir.args(node), ir.children(node)
    if op == "joint":
        inner = ir.op(kids[0])
        if inner in ("gaussian", "student_t") and "perplexity" not in ir.args(kids[0]):
            return "joint(kernel) of a fixed width is dense"
        return p_node_reason(ir, kids[0])
    if op == "walk":
        return p_node_reason(ir, kids[0])
    if op in ("gaussian", "knn"):
        if op == "gaussian" and "perplexity" not in args:
            return "a fixed-width gaussian p has no k nearest neighbours cut"
        if args.get("metric", "euclidean") != "euclidean" or args.get("diagonal"):
            return f"{op} with a non-euclidean metric or the diagonal"
        if not _of_x(ir, kids):
            return f"{op} of something other than x"
        return None
    return f"p uses {op}"


def _of_x(ir: IR, kids: list[int]) -> bool:
    """Is a call's one argument the input x?"""
    return len(kids) == 1 and ir.op(kids[0]) == "input" and ir.args(kids[0])["name"] == "x"


# -- clustering heads -------------------------------------------------------------------------
def cluster_reason(ir: IR) -> str | None:
    """Why the spec has no whole-data clustering path (None when it has one)."""
    mapper = ir.roots["mapper"]
    if ir.op(mapper) == "table" or not ir.args(mapper).get("softmax", False):
        return "its mapper is not a softmax (clustering) head"
    q = ir.roots["q"]
    if ir.op(q) == "debias":
        q = ir.children(q)[0]
    if ir.op(q) != "cluster" or ir.op(ir.children(q)[0]) != "f":
        return "its q is not cluster(f(x)) (or its debias)"
    divergence, p = ir.op(ir.roots["loss"]), ir.roots["p"]
    if divergence == "reverse_kl":
        return _gaussian_reason(ir, p)
    if divergence != "kl":
        return f"its divergence is {divergence} (kl or reverse_kl have a whole-data path)"
    inner = ir.children(p)[0] if ir.op(p) == "debias" else p
    return _cluster_p_reason(ir, inner)


def _gaussian_reason(ir: IR, p: int) -> str | None:
    args, kids = ir.args(p), ir.children(p)
    if ir.op(p) != "gaussian" or "perplexity" in args:
        return "reverse_kl needs p = gaussian(x, sigma, diagonal=true)"
    if not args.get("diagonal") or args.get("metric", "euclidean") != "euclidean":
        return "reverse_kl needs a euclidean gaussian p with diagonal=true"
    if not _of_x(ir, kids):
        return "its gaussian p is not of x"
    return None


def _cluster_p_reason(ir: IR, node: int) -> str | None:
    op, kids = ir.op(node), ir.children(node)
    if op in ("union", "walk"):
        return next((r for r in (_cluster_p_reason(ir, k) for k in kids) if r), None)
    if op == "augmentation":
        return None
    if op == "joint":
        return "a joint p (one sum over the matrix)"
    return p_node_reason(ir, node)


# -- what the generated module says -----------------------------------------------------------
def docstring_note(
    ir: IR, neighbour_path: bool, normaliser: str = "dense", width: int = 88
) -> list[str]:
    """Lines for a generated module's docstring: what `icon-dsl train` does instead of calling
    the module on all rows of a large data set (empty when it always calls it), and, for a
    module compiled with row blocks, what its forward does."""
    own = {
        "dense": "This module computes the dense form of its batch.",
        "exact": "This module's forward takes its batch block_size rows at a time and "
        "recomputes each block in the backward (memory N x block_size, the same numbers as the "
        "dense form); divergence and distributions are dense.",
        "sampled": "This module's forward keeps each row's `neighbours` largest entries of p "
        f"({PERPLEXITY_NEIGHBOURS:g} x perplexity, or knn's k, unless given; renormalised, the "
        "mass beyond them dropped), built once in blocks of block_size rows and kept while "
        "the inputs stay exactly equal, and estimates q's normaliser from `negatives` columns "
        "drawn uniformly per row (an estimate whose log is biased low for few columns); "
        "divergence and distributions are dense.",
    }[normaliser]
    table = ir.op(ir.roots["mapper"]) == "table"
    if neighbour_path and table and sparse_p_reason(ir) is None:
        above = (
            "by sums of its kernel on an interpolation grid of the embedding (interpolated: "
            "about 1e-5 of the normaliser, a few per cent of its gradient)"
            if interpolates(ir)
            else f"from {NEIGHBOUR_NEGATIVES} uniform negatives per row (sampled: an "
            "estimate, biased low by Jensen's inequality)"
        )
        text = (
            f"Large data: `icon-dsl train` on more than {FULL_BATCH_LIMIT:,} rows does not call "
            "this module on all rows. It builds p once on each row's nearest neighbours "
            f"({PERPLEXITY_NEIGHBOURS:g} x perplexity for a perplexity p, k for knn; the mass "
            f"beyond them is dropped) and normalises q in row blocks (exact) or, above "
            f"{EXACT_LIMIT:,} rows, {above}."
        )
    elif cluster_reason(ir) is None:
        text = (
            f"Large data: `icon-dsl train` on more than {FULL_BATCH_LIMIT:,} rows computes this "
            "loss on every row each epoch through q's low rank (nothing N x N): its sums over "
            f"all pairs are exact row blocks or, above {EXACT_LIMIT:,} rows, sampled from "
            f"{CLUSTER_NEGATIVES} columns per row (unbiased)."
        )
    elif normaliser != "dense":  # the module's own note alone
        return textwrap.wrap(f"Large data: {own[0].lower()}{own[1:]}", width)
    else:
        return []
    return textwrap.wrap(f"{text} {own}", width)
