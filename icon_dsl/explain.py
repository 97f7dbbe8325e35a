"""`icon-dsl explain`: the objective as formulas, its periodic-table cell and known name.

Takes: a spec. Guarantees: text for a reader; the cell comes from the registry's families of p and
q, the name from structural recognition (known.py), never from the file name.
"""

from __future__ import annotations

from pathlib import Path

from . import large_data
from . import registry as reg
from .codegen.blocks import block_refusal
from .codegen.strategies import has_fast_path, has_neighbour_path
from .describe import formulas
from .ir import IR
from .known import recognise
from .large_data import EXACT_LIMIT, FULL_BATCH_LIMIT
from .memory import BLOCK_SIZE_DEFAULT, memory_estimate, physical_memory
from .pipeline import check
from .source import Source

#: Periodic-table column (p) and row (q) labels, by registry family.
P_COLUMNS = {
    "gaussian": "Gaussian",
    "student_t": "Student-t",
    "identity": "identity",
    "knn": "uniform kNN",
    "augmentation": "same sample",
    "label": "same label",
    "classes": "class one-hot",
    "uniform": "uniform",
    "cross_modal": "cross-modal",
    "graph": "graph",
}
Q_ROWS = {"gaussian": "Gaussian", "student_t": "Student-t", "cluster": "cluster"}


def _family(ir: IR, node: int) -> str:
    """The family of a distribution, looking through modifiers (debias, normalize)."""
    op = ir.op(node)
    if op in ("debias", "normalize", "walk", "union", "joint") and ir.children(node):
        return _family(ir, ir.children(node)[0])
    if op == "kernel":
        return str(ir.args(node)["kernel"])
    return op


def cell(ir: IR) -> tuple[str, str]:
    p = _family(ir, ir.roots["p"])
    q = _family(ir, ir.roots["q"])
    return P_COLUMNS.get(p, p), Q_ROWS.get(q, q)


def memory_report(ir: IR, batch: int) -> list[str]:
    est = memory_estimate(ir, batch)
    gib = 2.0**30
    if est["dense"] is None:
        return [f"memory at N = {batch}: linear in N (p and q are N x n over prototypes)"]
    lines = [f"predicted peak memory of the loss at N = {batch} (float32):"]
    lines.append(f"    dense: {est['dense'] / gib:.2f} GiB")
    compiled = "" if has_fast_path(ir) else ", icon-dsl compile --normaliser exact"
    if est["block"] is not None:
        lines.append(
            f"    block mode (block_size={BLOCK_SIZE_DEFAULT}{compiled}): "
            f"{est['block'] / gib:.2f} GiB"
        )
    else:
        refusal = block_refusal(ir)  # the one reason memory_estimate gives no block mode
        assert refusal is not None
        lines.append(f"    block mode: not available for this spec: {refusal[1]}")
    total = physical_memory()
    if total is not None and est["dense"] > 0.8 * total:
        hint = (
            f"pass block_size={BLOCK_SIZE_DEFAULT} (block mode{compiled}) to the module"
            if est["block"] is not None
            else "use a smaller batch"
        )
        lines.append(
            f"    a batch of {batch} does not fit in dense mode on this machine "
            f"({total / gib:.0f} GiB): {hint}"
        )
    return lines


def large_data_report(ir: IR, n: int) -> list[str]:
    """How `icon-dsl train` would run a table neighbour spec or a clustering head on n rows, and
    each way of normalising q (timed on this machine, scaled to n)."""
    mapper = ir.roots["mapper"]
    if large_data.cluster_reason(ir) is None:
        return _cluster_report(ir, n)
    if reg.BLOCKS[ir.op(mapper)].parametric or not has_neighbour_path(ir):
        return []
    # imported only here: the prediction times torch on this machine, which other specs'
    # `explain` (and check, compile) must not load
    from .train import neighbours, sparse, sparse_p

    reason = large_data.sparse_p_reason(ir)
    if reason is not None:
        return ["", f"icon-dsl train on {n} rows: no sparse p ({reason}); dense form"]
    k = min(n - 1, sparse_p.neighbours_per_row(ir))
    interpolated = large_data.interpolates(ir)
    chosen = large_data.choose_normaliser(n, interpolated) if n > FULL_BATCH_LIMIT else "dense"
    lines = [
        "",
        f"icon-dsl train on {n} rows (table mapper; predicted on this machine, float32):",
        f"    p: sparse, {k} nearest neighbours per row ({n * k:,} entries), computed once",
        f"       by {neighbours.search_kind(n)}",
    ]
    sampled = f"{sparse.NEGATIVES} negatives per row, an estimate"
    dense = "the generated forward on all rows"
    run = (f"{sparse.EPOCHS} epochs", sparse.EPOCHS)
    usable = [name for name in sparse.NORMALISERS if interpolated or name != "interpolated"]
    predicted = sparse.predict(n, k, normalisers=usable)
    return lines + _normaliser_lines(predicted, sampled, dense, chosen, "", run)


def _cluster_report(ir: IR, n: int) -> list[str]:
    """The clustering head's whole-data path on n rows (cluster.predict)."""
    # imported only here, as in large_data_report: the prediction times torch
    from .api import compile as compile_spec
    from .train import cluster
    from .train.plan import CLUSTER_RESTARTS, CLUSTER_WHOLE_DATA

    chosen = large_data.choose_normaliser(n) if n > FULL_BATCH_LIMIT else "dense"
    epochs = CLUSTER_WHOLE_DATA[0]
    lines = [
        "",
        f"icon-dsl train on {n} rows (clustering head; predicted on this machine, float32, "
        "the spec's mapper on random 16-feature rows):",
        "    the whole data every epoch through q's low rank (nothing N x N)",
    ]
    mapper = compile_spec(ir.source).load().build_mapper(16)
    sampled = f"{large_data.CLUSTER_NEGATIVES} columns per row, unbiased"
    dense = "mini-batches of the generated forward"
    halved = large_data.start_epochs(CLUSTER_RESTARTS, epochs, large_data.halving_epochs(epochs))
    run = (f"{epochs} epochs x {CLUSTER_RESTARTS} starts, halved", halved)
    predicted = cluster.predict(ir, n, mapper)
    return lines + _normaliser_lines(predicted, sampled, dense, chosen, " and start", run)


def _normaliser_lines(
    predicted: dict[str, tuple[float, float]],
    sampled: str,
    dense: str,
    chosen: str,
    per: str,
    run: tuple[str, int],
) -> list[str]:
    """Each normaliser's predicted seconds per epoch (`per`: "" or " and start"), memory and
    total for a run (its label, and the epochs it counts), and which one train picks."""
    label, count = run
    lines = []
    for name, (seconds, memory) in predicted.items():
        detail = {
            "exact": "row blocks, the dense numbers",
            "sampled": sampled,
            "interpolated": "kernel sums on a grid, at an early epoch's spread",
        }[name]
        lines.append(
            f"    {name} ({detail}): {seconds:.3g} s per epoch{per}, {memory / 2.0**30:.2f} GiB; "
            f"{label}: {seconds * count / 60:.1f} min"
        )
    picked = {
        "dense": f"dense ({dense}: N <= {FULL_BATCH_LIMIT})",
        "exact": f"exact (N <= {EXACT_LIMIT})",
        "sampled": f"sampled (N > {EXACT_LIMIT})",
        "interpolated": f"interpolated (N > {EXACT_LIMIT}, a 1- or 2-D embedding)",
    }[chosen]
    names = "|".join([*predicted, "dense"])
    return [*lines, f"    train picks: {picked}; --normaliser {names} overrides"]


def lowering(ir: IR) -> str:
    """How the generated `forward` computes the loss (docs/performance.md)."""
    if has_fast_path(ir):
        return "contrastive group sums, one fused cross-entropy (no N x N p), row blocks"
    if has_neighbour_path(ir):
        return "closed-form neighbour cross-entropy (fixed p kept between calls)"
    return "dense log-space form, autograd"


def explain(spec: str | Path | Source, batch: int | None = None) -> str:
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    checked = check(spec)
    ir = checked.ir
    known = recognise(ir)
    p_col, q_row = cell(ir)
    lines = [f"method {ir.method}" + (f': "{ir.title}"' if ir.title else "")]
    lines.append(
        f"known as: {known.display} ({known.citation})" if known else "known as: - (a new method)"
    )
    lines.append(f"periodic-table cell: p column '{p_col}', q row '{q_row}'")
    lines.append(f"training forward: {lowering(ir)}")
    lines.append("")
    lines += formulas(ir)
    if ir.hypers:
        lines.append("")
        lines.append("hyperparameters:")
        for h in sorted(ir.hypers.values(), key=lambda h: h.name):
            default = "required" if h.default is None else f"default {h.default:g}"
            lines.append(f"    {h.name}: {h.domain.describe(h.name)}, {default}")
    if batch is not None:
        lines.append("")
        lines += memory_report(ir, batch)
        lines += large_data_report(ir, batch)
    for note in checked.notes:
        lines.append("")
        lines.append(note.render(ir.source))
    return "\n".join(lines)
