"""Does a checked candidate run? One seeded random batch through the interpreter (stage 2).

Takes: a checked IR. Guarantees: `probe_inputs` builds a small batch every block can read (two
views per sample, three classes, two modalities, a ring graph); `probe_candidate` returns None when
rows of p and q sum to 1 (or the whole matrix, for joint) and the loss is finite, else the reason
with its code. The interpreter (`icon_dsl.interpret`) is the independent oracle the generated
modules are tested against.
"""

from __future__ import annotations

import re
from typing import Any

from .. import registry as reg
from . import cache

_PROBE_N = 40  # > the example perplexity (30): the generated modules require it


def probe_inputs(ir: Any, n: int = _PROBE_N, seed: int = 0) -> dict[str, Any]:
    """A random batch for a checked IR: z, the inputs it names, prototypes, hyperparameters.

    n items are n/2 samples seen twice (views 0 and 1, modality 0 and 1), in 3 classes.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    half = n // 2
    index = torch.arange(half).repeat(2)
    inputs: dict[str, torch.Tensor] = {
        "x": torch.randn(n, 5, generator=gen, dtype=torch.float64),
        "side": torch.randn(n, 3, generator=gen, dtype=torch.float64),
        "y": torch.arange(n) % 3,
        "index": index,
        "modality": (torch.arange(n) >= half).long(),
    }
    ring = torch.arange(half)
    adjacency = torch.zeros(half, half, dtype=torch.float64)  # a sparse graph: a ring
    adjacency[ring, (ring + 1) % half] = adjacency[(ring + 1) % half, ring] = 1.0
    inputs["adjacency"] = adjacency
    mapper = ir.roots["mapper"]
    margs = ir.args(mapper)
    dim = int(float(margs.get("dim", 4)))
    # small embeddings: a narrow kernel (the sigma->0 row) must not underflow in probability space
    z = 0.1 * torch.randn(n, dim, generator=gen, dtype=torch.float64)
    if margs.get("softmax"):
        z = torch.softmax(z, dim=1)
    elif margs.get("sphere"):
        z = torch.nn.functional.normalize(z, dim=1)
    prototypes = None
    for node in ir.graph.nodes:
        if ir.op(node) == "prototypes":
            count = int(float(ir.args(node)["n"]))
            prototypes = torch.randn(count, dim, generator=gen, dtype=torch.float64)
    hypers = {h.name: h.default for h in ir.hypers.values() if h.default is not None}
    return {"z": z, "inputs": inputs, "prototypes": prototypes, "hypers": hypers}


def probe_key(ir: Any) -> str:
    """Everything `probe_candidate` reads from an IR, as text: equal keys, equal outcomes.

    Every node with its op, children, arguments and full type, the roots, the hyperparameter
    defaults and the user kernels; the mapper node only by what the probe batch takes from it
    (dim, softmax, sphere): the interpreter never reads the mapper's family, so a table, a linear
    map and an MLP over one objective are one probe.
    """
    mapper = ir.roots["mapper"]
    lines = []
    for node in sorted(ir.graph.nodes):
        if node == mapper:
            margs = ir.args(node)
            lines.append(f"%{node} mapper {[margs.get(k) for k in ('dim', 'softmax', 'sphere')]}")
            continue
        args = sorted((k, repr(v)) for k, v in ir.args(node).items())
        lines.append(f"%{node} {ir.op(node)} {ir.children(node)} {args} {ir.type(node)!r}")
    lines.append(repr(sorted(ir.roots.items())))
    lines.append(repr(sorted((h.name, repr(h.default)) for h in ir.hypers.values())))
    lines.append(repr(sorted((k, repr(v)) for k, v in ir.kernels.items())))
    ops = sorted({ir.op(n) for n in ir.graph.nodes if n != mapper})
    lines += [_block_text(reg.BLOCKS.get(op)) for op in ops]  # a block redefined: a new probe
    return "\n".join(lines)


def _block_text(block: Any) -> str:
    """A registry block as text that is the same in every process (no object addresses)."""
    if block is None:
        return "None"
    formula = block.weight_formula() if block.log_weight is not None else None
    return f"{re.sub(r' at 0x[0-9a-fA-F]+', '', repr(block))} w={formula}"


_OUTCOMES: dict[str, str | None] = {}  # probe key -> outcome, this process
_STORED: dict[str, str | None] | None = None  # cache.entry(key) -> outcome, from disk
_NEW: dict[str, str | None] = {}  # outcomes computed here and not yet on disk


def probe_candidate(ir: Any) -> str | None:
    """None when rows of p and q sum to 1 (or the matrix, for joint) and the loss is finite.

    Otherwise the reason, starting with its code: `not-row-stochastic`, `infinite-loss`,
    `probe-error` (the interpreter fails), or `unprobed` (the interpreter has no rule for a
    block yet: the candidate is kept, with this as a note). Outcomes are memoised per
    `probe_key` (the probe is deterministic: a seeded float64 batch), within the process and
    on disk (`cache`: under a fingerprint of the package's sources and torch's version).
    """
    global _STORED
    key = probe_key(ir)
    if key not in _OUTCOMES:
        if _STORED is None:
            _STORED = cache.load()
        name = cache.entry(key)
        if name in _STORED:
            _OUTCOMES[key] = _STORED[name]
        else:
            _OUTCOMES[key] = _NEW[name] = _probe(ir)
    return _OUTCOMES[key]


def flush() -> None:
    """Write the outcomes computed in this process to the disk cache (`cache`)."""
    if _NEW:
        cache.save(dict(_NEW))
        if _STORED is not None:
            _STORED.update(_NEW)
        _NEW.clear()


def _probe(ir: Any) -> str | None:
    # torch loads only when a probe runs: a warm listing reads the outcomes from the disk cache
    import torch

    from ..interpret import interpret

    batch = probe_inputs(ir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: thread start-up would dominate
    try:
        ev = interpret(ir, batch["z"], batch["inputs"], batch["hypers"], batch["prototypes"])
    except NotImplementedError as err:  # a block newer than the interpreter: not probed
        return f"unprobed: {err}"
    except Exception as err:  # noqa: BLE001 - a checked spec the interpreter cannot run
        return f"probe-error: the interpreter fails on a probe batch: {type(err).__name__}: {err}"
    finally:
        torch.set_num_threads(threads)
    keep = ev.valid
    for side, mat in (("p", ev.p), ("q", ev.q)):
        rows = mat[keep].sum(1)
        total = mat[keep].sum()
        if not (
            torch.allclose(rows, torch.ones_like(rows)) or torch.isclose(total, total.new_ones(()))
        ):
            return f"not-row-stochastic: probe rows of {side} sum to {rows.min():.3g}..{rows.max():.3g}"
    if not bool(torch.isfinite(ev.loss)):
        return f"infinite-loss: the {ir.op(ir.roots['loss'])} loss is {float(ev.loss)} on a probe batch"
    return None
