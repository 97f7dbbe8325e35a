"""Is a candidate another one up to a reparametrisation the mapper absorbs? (stage 3)

Two candidates are the same objective when one's loss at (c z, width) equals the other's at
(z, width / c) for some c > 0: the mapper (a table, a linear map, an MLP: their last operation
is linear) and learned prototypes can rescale f(x) freely, so the width of a euclidean or dot
kernel over f(x) is not part of the method (`icon_dsl.scaling` proves which widths, with sympy).

Takes: checked IRs. Guarantees: `scale_key` is equal for two IRs that sympy proves equal up to a
rescaling (the canonical form with the absorbed width left out); `probe_scale` decides the other
cases numerically: it fits c on one random batch and accepts only when the two losses agree to
`PROBE_RTOL` on every probe batch at that c. `merge` groups candidates and says which evidence
(proof or probe) joined each pair.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..ir import IR, _fmt
from ..scaling import mapper_scales, scale_free_kernels

#: A numeric probe accepts two losses as equal when |a - b| <= PROBE_RTOL * max(1, |a|) on
#: each of PROBE_BATCHES seeded float64 batches.
PROBE_RTOL = 1e-9
PROBE_BATCHES = 3
_WIDTH_ARGS = ("sigma", "temperature", "scale")


@dataclass(frozen=True)
class Evidence:
    """Why two candidates are one: a sympy `proof`, or a numeric `probe` with its scale c."""

    kind: str  # "proof" or "probe"
    detail: str

    def text(self) -> str:
        return f"{self.kind}: {self.detail}"


def _canonical(ir: IR, node: int, hidden: set[int]) -> str:
    """IR.canonical, with the width arguments of the `hidden` kernels left out."""
    op = ir.op(node)
    kids = [_canonical(ir, c, hidden) for c in ir.children(node)]
    args = ir.args(node)
    if op in ("mixture", "union"):
        weights = args.get("weights", [None] * len(kids))
        pairs = sorted(zip([_fmt(w) for w in weights], kids, strict=True))
        return f"{op}(" + ", ".join(f"{w}*{k}" for w, k in pairs) + ")"
    shown = {k: v for k, v in args.items() if k != "weights"}
    if node in hidden:
        shown = {k: v for k, v in shown.items() if k not in _WIDTH_ARGS}
        shown["width"] = "~"
    parts = kids + [f"{k}={_fmt(v)}" for k, v in sorted(shown.items())]
    return f"{op}(" + ", ".join(parts) + ")"


def scale_key(ir: IR) -> tuple[str, Evidence] | None:
    """A key equal for IRs proved the same objective up to a rescaling of f(x), and the proof.

    None when q holds no kernel whose width a rescaling absorbs, or more than one (a single c
    must then absorb several widths at once: `probe_scale` decides those).
    """
    kernels = scale_free_kernels(ir)
    if len({k.node for k in kernels}) != 1:
        return None
    kernel = kernels[0]
    text = " | ".join(
        f"{name}:{_canonical(ir, ir.roots[name], {kernel.node})}" for name in ("loss", "mapper")
    )
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return digest, Evidence("proof", f"{kernel.op} over f(x): {kernel.proof}")


def _losses(ir: IR, seed: int, scale: float) -> float:
    # torch loads only when two candidates must be compared numerically (a listing may not)
    import torch

    from ..interpret import interpret
    from .probe import probe_inputs

    batch = probe_inputs(ir, seed=seed)
    protos = batch["prototypes"]
    ev = interpret(
        ir,
        batch["z"] * scale,
        batch["inputs"],
        batch["hypers"],
        None if protos is None else protos * scale,
    )
    with torch.no_grad():
        return float(ev.loss)


def probe_scale(a: IR, b: IR) -> Evidence | None:
    """Evidence that b at (c z) equals a at (z) on every probe batch for one c > 0, or None.

    c is fitted on the first batch (a grid over log c, then golden-section refinement) and
    checked on all `PROBE_BATCHES` at tolerance `PROBE_RTOL`. Only for mappers that can rescale.
    """
    if not (mapper_scales(a) and mapper_scales(b)):
        return None
    try:
        target = _losses(a, 0, 1.0)
        gap = lambda log_c: abs(_losses(b, 0, math.exp(log_c)) - target)  # noqa: E731
        grid = [k / 4 for k in range(-40, 41)]
        best = min(grid, key=gap)
        lo, hi = best - 0.25, best + 0.25
        ratio = (math.sqrt(5) - 1) / 2
        for _ in range(60):
            m1, m2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
            if gap(m1) < gap(m2):
                hi = m2
            else:
                lo = m1
        log_c = (lo + hi) / 2
        for seed in range(PROBE_BATCHES):
            want = _losses(a, seed, 1.0)
            got = _losses(b, seed, math.exp(log_c))
            if not abs(got - want) <= PROBE_RTOL * max(1.0, abs(want)):
                return None
    except Exception:  # noqa: BLE001 - a candidate the interpreter cannot run is not merged
        return None
    return Evidence(
        "probe",
        f"loss_b(c z) = loss_a(z) with c = {math.exp(log_c):.6g} on {PROBE_BATCHES} seeded "
        f"float64 batches, relative tolerance {PROBE_RTOL:g}",
    )


@dataclass
class Merge:
    """One objective: the index of the record kept, the others, and the evidence for each."""

    kept: int
    others: list[int]
    evidence: dict[int, Evidence]


def merge(irs: Sequence[IR | None], prefer: Sequence[bool]) -> list[Merge]:
    """Group IRs that are one objective up to a rescaling; keep a preferred one (a known method).

    `irs[i]` None: not a candidate (rejected). Groups are formed within equal structure (the
    canonical form with numbers abstracted), by `scale_key` (a sympy proof) first, then by
    `probe_scale` between the remaining representatives whose key is None.
    """
    by_structure: dict[str, list[int]] = {}
    for i, ir in enumerate(irs):
        if ir is not None:
            by_structure.setdefault(ir.canonical_hash(numbers=False), []).append(i)
    out: list[Merge] = []
    for members in by_structure.values():
        if len(members) < 2:
            continue
        classes: list[tuple[list[int], dict[int, Evidence]]] = []
        keyed: dict[str, int] = {}
        for i in members:
            ir = irs[i]
            assert ir is not None
            found = scale_key(ir)
            if found is not None and found[0] in keyed:
                group, evidence = classes[keyed[found[0]]]
                group.append(i)
                evidence[i] = found[1]
                continue
            if found is None and _several_scale_free(ir):
                joined = _join_by_probe(irs, classes, i)
                if joined:
                    continue
            if found is not None:
                keyed[found[0]] = len(classes)
            classes.append(([i], {}))
        for group, evidence in classes:
            if len(group) < 2:
                continue
            kept = next((i for i in group if prefer[i]), group[0])
            first = group[0]
            if kept != first:  # the kept one's evidence is against the first: reuse it
                evidence[first] = evidence.get(kept, Evidence("proof", "same key"))
            out.append(Merge(kept, [i for i in group if i != kept], evidence))
    return out


def _several_scale_free(ir: IR) -> bool:
    """Several kernels a rescaling reaches: one c must absorb them all, which sympy does not
    decide here, so a numeric probe does. With none, a rescaling changes nothing to compare."""
    return len({k.node for k in scale_free_kernels(ir)}) > 1


def _join_by_probe(
    irs: Sequence[IR | None], classes: list[tuple[list[int], dict[int, Evidence]]], i: int
) -> bool:
    ir = irs[i]
    assert ir is not None
    for group, evidence in classes:
        rep = irs[group[0]]
        assert rep is not None
        if not _several_scale_free(rep):
            continue
        found = probe_scale(rep, ir)
        if found is not None:
            group.append(i)
            evidence[i] = found
            return True
    return False


def as_records(merges: Sequence[Merge], names: Sequence[str]) -> dict[int, dict[str, Any]]:
    """index -> the fields the merge sets on each record: status, same_as, reason, evidence."""
    out: dict[int, dict[str, Any]] = {}
    for m in merges:
        kept = names[m.kept]
        out[m.kept] = {"same_as": tuple(names[i] for i in m.others)}
        for i in m.others:
            ev = m.evidence.get(i, Evidence("proof", "same key"))
            out[i] = {
                "status": "duplicate",
                "same_as": (kept,),
                "reason": f"same objective as {kept} up to a rescaling of f(x) ({ev.text()})",
                "equivalence": ev.text(),
            }
    return out
