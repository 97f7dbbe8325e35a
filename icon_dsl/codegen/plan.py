"""The plan: every decision about a generated module, as the values its template fills in.

Takes: a checked IR. Guarantees: p and q lowered into `_terms` (log-space; p cached, and the
fast or neighbour form chosen, where they apply), the columns gathered, the hyperparameters
with their defaults and domain checks, the mapper: a `Plan` the template only prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import large_data
from .. import registry as reg
from ..ir import IR, DistType
from . import names
from .blocks import NORMALISERS, block_plan, neighbours_code, refuse_blocks
from .layout import fits
from .nodes import Emitter
from .numbers import NotFinite, NumPrinter, number_literal, python_expr, refuse
from .strategies import (
    REPLICATED_OPS,
    cached_p_lines,
    can_cache_p,
    fast_forward,
    gather_lines,
    has_neighbour_path,
    neighbour_plan,
)
from .values import Val, all_of

INPUT_ORDER = ("x", "side", "y", "index", "modality")


@dataclass
class Plan:
    """Everything the template needs."""

    upcast: str  # the line that raises half-precision z (and x, side) to float32
    class_name: str
    method: str
    source_name: str
    source_text: str
    known_as: str | None
    objective: list[str]  # the docstring's formulas of p, q and the loss
    large_data: list[str]  # the docstring's note on what `icon-dsl train` does at scale
    hypers: list[dict[str, str]]
    constraints: list[dict[str, str]]
    prototypes: dict[str, Any] | None
    inputs: list[str]
    body: list[str]
    checks: list[str]
    helpers: list[str]
    p_kind: str
    p_var: str
    p_columns: str | None
    p_learned: bool
    cache_p: bool
    q_log: str
    joint: bool
    graph: bool
    keep: str | None
    fast: dict[str, list[str]] | None  # the contrastive fast path's methods
    neighbour: dict[str, Any] | None
    blocks: dict[str, Any] | None  # the row-block forward (--normaliser exact, sampled)
    sampled: dict[str, str] | None  # sparse p and sampled normaliser (--normaliser sampled)
    divergence: str
    divergence_rows: tuple[str, ...]  # the registry's code for each anchor's divergence
    cross_entropy: bool  # with a fixed p, forward trains on the cross-entropy
    mapper: dict[str, Any]


@dataclass
class _Objective:
    """p and q lowered into the body, and how forward computes the loss from them."""

    p_val: Val
    p_kind: str
    p_var: str  # code for p (log-probabilities where p_kind is logprob)
    q_log: str  # code for log q
    cache_p: bool
    keep: str | None  # the kept-row test, if rows may be empty
    inputs: list[str]
    replicated: bool
    neighbour: dict[str, Any] | None
    blocks: dict[str, Any] | None


def plan(
    ir: IR, known_as: str | None = None, class_name: str | None = None, normaliser: str = "dense"
) -> Plan:
    if normaliser not in NORMALISERS:
        raise ValueError(f"normaliser must be one of {', '.join(NORMALISERS)}, got {normaliser!r}")
    if normaliser != "dense":
        refuse_blocks(ir, normaliser)
    e = Emitter(ir)
    o = _lower_objective(ir, e, blocks=normaliser)
    sampled = {"neighbours": neighbours_code(ir, e)} if normaliser == "sampled" else None
    b = e.body
    mapper = _mapper_plan(ir, e)
    protos = None
    for node in ir.graph.nodes:
        if ir.op(node) == "prototypes":
            protos = {"n": e.num(ir.args(node)["n"]), "dim": mapper["dim"]}
    fast = fast_forward(ir, e)
    b.lines[:0] = gather_lines(o.inputs, o.replicated, b.needs_diag, b.lines)
    if o.neighbour is not None:
        b.helpers.add("neighbour")
        if o.p_val.kind == "mask":
            b.helpers.add("uniform_rows")
    floats = [n for n in ("z", *o.inputs) if n in ("z", "x", "side")]
    upcast = f"{', '.join(floats)} = " + ", ".join(f"_at_least_float32({n})" for n in floats)
    pt = ir.dist_type(ir.roots["p"])
    divergence = reg.BLOCKS[ir.op(ir.roots["loss"])]
    return Plan(
        upcast=upcast,
        class_name=class_name or names.class_name(ir.method),
        method=ir.method,
        source_name=_display_path(ir.source.name),
        source_text=ir.source.text,
        known_as=known_as,
        objective=_objective(ir),
        large_data=large_data.docstring_note(ir, o.neighbour is not None, normaliser),
        hypers=_hyper_plan(ir, e),
        constraints=_constraint_plan(ir, e),
        prototypes=protos,
        inputs=o.inputs,
        body=b.lines,
        checks=b.checks,
        helpers=["contrastive"] if fast else sorted(b.helpers),
        p_kind=o.p_kind,
        p_var=o.p_var,
        p_columns=o.p_val.columns,
        p_learned=pt.learned,
        cache_p=o.cache_p,
        q_log=o.q_log,
        joint=pt.normalised == "joint",
        graph=e.graph,
        keep=o.keep,
        fast=fast,
        neighbour=o.neighbour,
        blocks=o.blocks,
        sampled=sampled,
        divergence=divergence.name,
        divergence_rows=divergence.rows_code,
        cross_entropy=divergence.trains_on_cross_entropy,
        mapper=mapper,
    )


def _objective(ir: IR) -> list[str]:
    """p's and q's formulas with their supports, and the loss's formula (the spec, quoted
    below them, gives the calls): one line each where it fits."""
    lines = []
    for name in ("p", "q"):
        root = ir.roots[name]
        block = reg.BLOCKS.get(ir.op(root))
        head = f"{name}: {block.formula if block is not None else ir.text(root)}"
        support = f"support: {ir.dist_type(root).describe_support()}"
        one_line = f"{head} ({support})"
        lines += [one_line] if fits(one_line, 4) else [head, f"   {support}"]
    return [*lines, f"loss: {reg.BLOCKS[ir.op(ir.roots['loss'])].formula}"]


def _lower_objective(ir: IR, e: Emitter, blocks: str = "dense") -> _Objective:
    """p's lines, then q's, into the body; p cached and the neighbour form split off where
    they apply; with blocks ("exact", "sampled"), p's own lines also go to the row blocks
    (which keep p's perplexity searches for "exact": "sampled" builds p once)."""
    p_root, q_root = ir.roots["p"], ir.roots["q"]
    p_val = e.lower(p_root, "p")
    b = e.body
    b.fold_keeps(0, "p_rows")
    p_lines, p_keeps, p_names = len(b.lines), len(b.keeps), set(b.taken)
    p_searches = len(b.calibrations)  # q's depend on z: never kept between calls
    p_needs_diag = b.needs_diag
    q_val = e.lower(q_root, "q")
    b.fold_keeps(p_keeps, "q_rows")
    pt: DistType = ir.dist_type(p_root)
    q_log = _q_log(e, pt, ir.dist_type(q_root), q_val)
    p_kind, p_var = _p_log(p_val)
    cache_p = can_cache_p(pt, e, b.lines[:p_lines], b.lines[p_lines:], p_names)
    inputs = [name for name in INPUT_ORDER if name in e.inputs]
    block = None
    if blocks != "dense":
        if has_neighbour_path(ir):  # p alone: q is the closed-form neighbour rows
            lines, keeps = b.lines[:p_lines], b.keeps[:p_keeps]
        else:  # p and q, and the divergence of autograd's form
            lines, keeps = [*b.lines, f"log_q = {q_log}"], b.keeps
        keep = all_of(keeps) if keeps else None
        searches = b.calibrations[:p_searches] if blocks == "exact" else []
        block = block_plan(lines, p_kind, p_var, keep, e, inputs, searches)
    if cache_p:
        p_keep = all_of(b.keeps[:p_keeps]) if p_keeps else None
        cached = cached_p_lines(
            b.lines[:p_lines], p_var, p_keep, inputs, list(e.hyper_names.values())
        )
        b.lines[:p_lines], p_lines = cached, len(cached)
        b.keeps[:p_keeps] = ["p_keep"] if p_keeps else []
        p_var = "p"
    keep = all_of(b.keeps) if b.keeps else None
    neighbour = None
    replicated = any(ir.op(n) in REPLICATED_OPS for n in ir.graph.nodes)
    if has_neighbour_path(ir):  # q is a kernel of f(x): every kept-row test comes from p
        p_code, q_code = b.lines[:p_lines], b.lines[p_lines:]
        neighbour = neighbour_plan(
            ir, e, inputs, p_code, q_code, p_needs_diag, p_val.kind, replicated
        )
        neighbour["p_var"], neighbour["keep"] = p_var, keep
    return _Objective(
        p_val, p_kind, p_var, q_log, cache_p, keep, inputs, replicated, neighbour, block
    )


def _q_log(e: Emitter, pt: DistType, qt: DistType, q_val: Val) -> str:
    """Code for log q (a cross-modal p first restricts q's logits to the other modality)."""
    b = e.body
    if pt.cross and not qt.cross and q_val.kind == "logits":
        b.comment("a cross-modal p restricts q to the other modality")
        b.add("same_modality = modality[:, None] == modality_all[None, :]")
        b.add(f"{q_val.var} = {q_val.var}.masked_fill(same_modality, -math.inf)")
    if q_val.kind == "logprob":
        return q_val.var
    if q_val.kind == "logits":
        return f"torch.log_softmax({q_val.var}, dim=1)"
    # log with a zero gradient where q = 0 (torch.log's would be 0 * inf = NaN there)
    b.helpers.add("log")
    return f"_log({e.prob(q_val)})"


def _p_log(p_val: Val) -> tuple[str, str]:
    """p's kind and code as the template reads them: logits become log-probabilities."""
    if p_val.kind == "logits":
        # log-probabilities: log p stays exact where p underflows (reverse KL, narrow kernels)
        return "logprob", f"torch.log_softmax({p_val.var}, dim=1)"
    return p_val.kind, p_val.var


def _mapper_plan(ir: IR, e: Emitter) -> dict[str, Any]:
    mapper_node = ir.roots["mapper"]
    margs = ir.args(mapper_node)
    block = reg.BLOCKS[ir.op(mapper_node)]
    sizes = {slot: e.num(margs.get(slot, 0)) for slot in ("dim", "hidden", "depth")}
    return {
        "kind": block.name,
        "summary": block.summary,
        "init": [line.format(**sizes) for line in block.init_code],
        # a non-parametric mapper has a row per sample: it reads sample indices
        "input": "x" if block.parametric else "index",
        "text": names.spec_text(ir.text(mapper_node)),  # as the spec gives it, all options
        "dim": e.num(margs["dim"]),
        "hidden": e.num(margs.get("hidden", 0)),
        "depth": e.num(margs.get("depth", 0)),
        "sphere": bool(margs["sphere"]),
        "softmax": bool(margs["softmax"]),
    }


def _display_path(name: str) -> str:
    """The spec's path as shown in a generated file: relative, never absolute (determinism)."""
    path = Path(name)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def _hyper_plan(ir: IR, emitter: Emitter) -> list[dict[str, str]]:
    out = []
    for name in sorted(ir.hypers):
        h = ir.hypers[name]
        py = emitter.hyper_names[name]
        kind = "int" if h.integer else "float"
        default = ""
        if h.default is not None:
            if not math.isfinite(h.default):
                refuse(ir, h.span, NotFinite(f"{name}'s default {h.default} is not finite"))
            default = " = " + number_literal(int(h.default) if h.integer else float(h.default))
        cond, desc = _domain_code(py, h.domain, h.integer)
        out.append({"name": py, "type": kind, "default": default, "cond": cond, "desc": desc})
    return out


def _constraint_plan(ir: IR, emitter: Emitter) -> list[dict[str, str]]:
    """Run-time checks for hyperparameters inside expressions: `temperature=2 * t` needs 2t > 0."""
    out = []
    for expr, domain, slot in ir.constraints:
        code = python_expr(NumPrinter(emitter.hyper_names, prefix="").doprint(expr))
        names_ = sorted(emitter.hyper_names[str(s)] for s in expr.free_symbols)
        cond, desc = _domain_code(code, domain, False)
        values = "(" + ", ".join(names_) + ("," if len(names_) == 1 else "") + ")"
        out.append(
            {
                "cond": cond,
                "name": ", ".join(names_),
                "value": values,
                "desc": f"{slot} = {code}: {domain.describe(slot)}",
            }
        )
    return out


def _domain_code(py: str, dom: reg.Domain, integer: bool) -> tuple[str, str]:
    parts = []
    lo, hi = (_bound(v, integer or dom.integer) for v in (dom.lo, dom.hi))
    low, high = ("<" if dom.lo_open else "<="), ("<" if dom.hi_open else "<=")
    if math.isfinite(dom.lo) and math.isfinite(dom.hi):
        parts.append(f"{lo} {low} {py} {high} {hi}")
    elif math.isfinite(dom.lo):
        parts.append(f"{py} {'>' if dom.lo_open else '>='} {lo}")
    elif math.isfinite(dom.hi):
        parts.append(f"{py} {high} {hi}")
    if integer:
        parts.append(f"float({py}).is_integer()")
    cond = " and ".join(parts) if parts else "math.isfinite(" + py + ")"
    desc = dom.describe(py)
    return cond, desc


def _bound(value: float, integer: bool) -> str:
    """A domain bound as ruff would print it: 1e15 rather than 1000000000000000.0, 1 for an
    integer hyperparameter."""
    if integer and math.isfinite(value) and value == int(value):
        return str(int(value))
    text = reg.short_number(value)
    return f"{text}.0" if text.lstrip("-").isdigit() else text  # a float stays a float
