"""Does a checked candidate run? One seeded random batch through the interpreter (stage 2).

Takes: a checked IR. Guarantees: `probe_inputs` builds a small batch every block can read (two
views per sample, three classes, two modalities, a ring graph); `probe_candidate` returns None when
rows of p and q sum to 1 (or the whole matrix, for joint) and the loss is finite, else the reason
with its code. The interpreter (`icon_dsl.interpret`) is the independent oracle the generated
modules are tested against.
"""

from __future__ import annotations

from typing import Any

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


def probe_candidate(ir: Any) -> str | None:
    """None when rows of p and q sum to 1 (or the matrix, for joint) and the loss is finite.

    Otherwise the reason, starting with its code: `not-row-stochastic`, `infinite-loss`,
    `probe-error` (the interpreter fails), or `unprobed` (the interpreter has no rule for a
    block yet: the candidate is kept, with this as a note).
    """
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
