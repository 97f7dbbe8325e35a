"""Emission: every decision about the generated module is made here; templates only fill holes.

Takes: a checked IR. Guarantees: deterministic Python source for a standalone torch module that
follows the generated-module contract (docs/design.md): one public nn.Module named after the
method, `forward`, `distributions`, `divergence`, `build_mapper`. Lowering picks the cheap exact
form: log-space throughout, an indicator p as a mask or a gather of log q, no H(p) in the
training loss, rows of p that may be empty dropped and counted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from .. import registry as reg
from ..describe import formulas
from ..ir import IR, DistType
from . import names
from .kernels import gaussian_width, kernel_lines
from .layout import assign, assignment_lines, call, define, fits
from .layout import operands as _operands
from .nodes import Emitter
from .numbers import NotFinite, NumPrinter, number_literal, python_expr, refuse
from .values import all_of, words

__all__ = ["generate", "formulas", "has_fast_path", "has_neighbour_path", "assignment_lines"]
__all__ += ["_operands"]  # imported by the tests

INPUT_ORDER = ("x", "side", "y", "index", "modality")

# Blocks whose value for a row needs the rows of every process: a distributed run gathers the
# whole batch and every process computes the full loss (replicated) instead of its own rows.
REPLICATED_OPS = ("walk", "joint")


def _gather_lines(
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


def _cached_p_lines(
    p_lines: list[str], p_expr: str, p_keep: str | None, inputs: list[str], hypers: list[str]
) -> list[str]:
    """p's lines wrapped in the fixed-p cache: p reads only inputs, so while they (and the
    hyperparameters it uses) are exactly equal to the last call's, the last p is reused."""
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
    if fits(one_line, 8):
        key_lines = [one_line]
    else:  # laid out as ruff format lays it out
        key_lines = ["fixed_key = (", *(f"    {k}," for k in key), ")"]
    return [
        "# p reads only the inputs: reuse the last p while they are exactly equal (cache_p)",
        *key_lines,
        "fixed = self._cached_p(fixed_key)",
        "if fixed is None:",
        *(f"    {line}" for line in p_lines),
        f"    p, p_keep = {p_expr}, {p_keep or 'None'}",
        "    fixed = self._remember_p(fixed_key, p, p_keep)",
        "p, p_keep = fixed",
    ]


@dataclass
class Plan:
    """Everything the template needs."""

    upcast: str  # the line that raises half-precision z (and x, side) to float32
    class_name: str
    method: str
    title: str | None
    source_name: str
    source_text: str
    known_as: str | None
    formulas: list[str]
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
    fast: list[str] | None
    neighbour: dict[str, Any] | None
    divergence: str
    mapper: dict[str, Any]


def _can_cache_p(
    pt: DistType, e: Emitter, p_lines: list[str], q_lines: list[str], p_names: set[str]
) -> bool:
    """Is p worth keeping between calls? It must not depend on f(x) or prototypes, have work to
    save (lines of its own), read no graph buffer (compared by value it would cost as much as
    it saves), and share no variable with q's lines."""
    code = [line for line in p_lines if not line.startswith("#")]
    # inside the cache's `if`, p's lines move 4 columns right: they must still fit
    fits_inside = all(fits(line, 12) for line in code)
    return (
        not pt.learned
        and bool(code)
        and fits_inside
        and not e.graph
        and not (words(q_lines) & p_names)
    )


def _neighbour_plan(
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
    kernel = _q_kernel_node(ir)
    op, args = ir.op(kernel), ir.args(kernel)
    to_probabilities = {
        "logits": "p = p.exp().to(z.dtype)",
        "logprob": "p = p.exp().to(z.dtype)",
        "prob": "p = p.to(z.dtype)",
        "mask": "p = _uniform_rows(p, z.dtype)",
    }[p_kind]
    top = _gather_lines(inputs, replicated, p_needs_diag, p_lines, p_only=True)
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
        "q_text": e._text(ir.roots["q"]),
        "kernel": kernel_lines(ir, op, args, "d2", e.num),
        "to_probabilities": to_probabilities,
        "replicated": replicated,
        "joint": ir.dist_type(ir.roots["p"]).normalised == "joint",
    }


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


def _q_kernel_node(ir: IR) -> int:
    """q's kernel: q itself, or the kernel inside q = joint(kernel)."""
    q_root = ir.roots["q"]
    return ir.children(q_root)[0] if ir.op(q_root) == "joint" else q_root


def has_neighbour_path(ir: IR) -> bool:
    """Is forward the closed-form neighbour cross-entropy (`_NeighbourCrossEntropy`)?

    A fixed p against q = gaussian or student_t of f(x) over the other points (euclidean),
    both normalised per row or both jointly: t-SNE (both forms), SNE and their new neighbours.
    Everything else keeps autograd's form.
    """
    p_root, kernel = ir.roots["p"], _q_kernel_node(ir)
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


def _fast_forward(ir: IR, e: Emitter) -> list[str] | None:
    """The contrastive fast path, or None when the spec is not of that family.

    An indicator p over groups (same label, same sample) against a Gaussian q on f(x) has
    logits s_ij = a_i . b_j + c_j (the row constant of -d2 / 2 sigma^2 cancels in the loss),
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
    lines = [
        "if self.validate:  # shapes now; NaN / inf in z shows in the loss, checked below",
        f'    _check_batch(z, {{"{key}": {key}}}, finite=False)',
        "z = _at_least_float32(z)",
        "world, offset = _world(self.gather, z.shape[0])",
        names.comment(f"q = {e._text(q_root)}: logits s_ij = a_i . b_j + c_j"),
    ]
    if metric == "cosine":
        lines += ["u = F.normalize(z, dim=1)  # -d2 / 2 sigma^2 = (cos - 1) / sigma^2"]
    else:
        lines += ["u = z"]
    lines += [f"a, b = u / {sigma2}, _gather(u, world)"]
    if metric == "euclidean":
        lines += [f"c = -(b * b).sum(1) / (2 * {sigma2})  # -|b_j|^2 / 2 sigma^2"]
    else:
        lines += ["c = None"]
    lines += [
        f"{key}_all = _gather({key}, world)",
        names.comment(f"p = {e._text(p_root)}: uniform over the other members of i's group"),
        f"keys, keys_all, block = {key}, {key}_all, self.block_size",
        "total, kept = _contrastive_total(a, b, c, keys, keys_all, offset, block)",
        "if self.validate and not torch.isfinite(total):",
        f'    _check_batch(z, {{"{key}": {key}}})',
        "return self._mean_of_total(total, kept, z.shape[0], world)",
    ]
    e.body.helpers.add("contrastive")
    return lines


def plan(ir: IR, known_as: str | None = None, class_name: str | None = None) -> Plan:
    e = Emitter(ir)
    p_root, q_root = ir.roots["p"], ir.roots["q"]
    p_val = e.lower(p_root, "p")
    b = e.body
    b.fold_keeps(0, "p_rows")
    p_lines, p_keeps, p_names = len(b.lines), len(b.keeps), set(b.taken)
    p_needs_diag = b.needs_diag
    q_val = e.lower(q_root, "q")
    b.fold_keeps(p_keeps, "q_rows")
    pt: DistType = ir.dist_type(p_root)
    if pt.cross and not ir.dist_type(q_root).cross and q_val.kind == "logits":
        b.comment("a cross-modal p restricts q to the other modality")
        b.add("same_modality = modality[:, None] == modality_all[None, :]")
        b.add(f"{q_val.var} = {q_val.var}.masked_fill(same_modality, -math.inf)")
    if q_val.kind == "logprob":
        q_log = q_val.var
    elif q_val.kind == "logits":
        q_log = f"torch.log_softmax({q_val.var}, dim=1)"
    else:
        # log with a zero gradient where q = 0 (torch.log's would be 0 * inf = NaN there)
        b.helpers.add("log")
        q_log = f"_log({e.prob(q_val)})"
    p_kind, p_var = p_val.kind, p_val.var
    if p_kind == "logits":
        # log-probabilities: log p stays exact where p underflows (reverse KL, narrow kernels)
        p_var, p_kind = f"torch.log_softmax({p_val.var}, dim=1)", "logprob"
    elif p_kind == "logprob":  # already log-probabilities over the whole matrix
        p_kind = "logprob"
    cache_p = _can_cache_p(pt, e, b.lines[:p_lines], b.lines[p_lines:], p_names)
    inputs = [name for name in INPUT_ORDER if name in e.inputs]
    if cache_p:
        p_keep = all_of(b.keeps[:p_keeps]) if p_keeps else None
        cached = _cached_p_lines(
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
        neighbour = _neighbour_plan(
            ir, e, inputs, p_code, q_code, p_needs_diag, p_val.kind, replicated
        )
        neighbour["p_var"], neighbour["keep"] = p_var, keep
    mapper_node = ir.roots["mapper"]
    margs = ir.args(mapper_node)
    mapper = {
        "kind": ir.op(mapper_node),
        "dim": e.num(margs["dim"]),
        "hidden": e.num(margs.get("hidden", 0)),
        "depth": e.num(margs.get("depth", 0)),
        "sphere": bool(margs["sphere"]),
        "softmax": bool(margs["softmax"]),
    }
    protos = None
    for node in ir.graph.nodes:
        if ir.op(node) == "prototypes":
            n = ir.args(node)["n"]
            protos = {"n": e.num(n), "dim": mapper["dim"]}
    fast = _fast_forward(ir, e)
    b.lines[:0] = _gather_lines(inputs, replicated, b.needs_diag, b.lines)
    if neighbour is not None:
        b.helpers.add("neighbour")
        if p_val.kind == "mask":
            b.helpers.add("uniform_rows")
    floats = [n for n in ("z", *inputs) if n in ("z", "x", "side")]
    upcast = f"{', '.join(floats)} = " + ", ".join(f"_at_least_float32({n})" for n in floats)
    return Plan(
        upcast=upcast,
        class_name=class_name or names.class_name(ir.method),
        method=ir.method,
        title=ir.title,
        source_name=_display_path(ir.source.name),
        source_text=ir.source.text,
        known_as=known_as,
        formulas=formulas(ir),
        hypers=_hyper_plan(ir, e),
        constraints=_constraint_plan(ir, e),
        prototypes=protos,
        inputs=inputs,
        body=b.lines,
        checks=b.checks,
        helpers=sorted(b.helpers),
        p_kind=p_kind,
        p_var=p_var,
        p_columns=p_val.columns,
        p_learned=pt.learned,
        cache_p=cache_p,
        q_log=q_log,
        joint=pt.normalised == "joint",
        graph=e.graph,
        keep=keep,
        fast=fast,
        neighbour=neighbour,
        divergence=ir.op(ir.roots["loss"]),
        mapper=mapper,
    )


def _display_path(name: str) -> str:
    """The spec's path as shown in a generated file: relative, never absolute (determinism)."""
    path = Path(name)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("icon_dsl", "codegen/templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(p: Plan) -> str:
    params = ["self", "z: Tensor"] + (["*"] if p.inputs else [])
    params += [f"{name}: Tensor" for name in p.inputs]
    inputs_tuple = ", ".join(f'"{n}"' for n in p.inputs)
    context = {
        "plan": p,
        "text": names.spec_text,
        "string": names.string_literal,
        "define": lambda name, returns, extra=(): define(name, params + list(extra), returns),
        "call": call,
        "assign": assign,
        "inputs_tuple": f"({inputs_tuple},)" if len(p.inputs) == 1 else f"({inputs_tuple})",
        "call_args": "".join(f", {name}={name}" for name in p.inputs),
        "terms_call": lambda target, gather: call(
            "self._terms",
            ["z", *(f"{n}={n}" for n in p.inputs), *(["gather=self.gather"] if gather else [])],
            target=target,
        ),
        "inputs_dict": "{" + ", ".join(f'"{n}": {n}' for n in p.inputs) + "}",
        "p_terms_call": lambda target, gather: call(
            "self._p_terms",
            ["z", *(f"{n}={n}" for n in p.inputs), f"gather={gather}"],
            target=target,
        ),
    }
    template = _env().get_template("module.py.j2")
    draft = template.render(imports="", **context)
    return template.render(imports=_imports(draft), **context).rstrip() + "\n"


def _imports(draft: str) -> str:
    """Only the imports the module uses, so the file is lint-clean."""
    lines = ["import functools"]
    if "math." in draft:
        lines.append("import math")
    lines.append("from collections.abc import Callable")
    lines.append("from typing import TypeVar\n")
    lines.append("import torch")
    if "dist." in draft:
        lines.append("import torch.distributed as dist")
    if "F." in draft:
        lines.append("import torch.nn.functional as F")
    lines.append("from torch import Tensor, nn")
    return "\n".join(lines)


def generate(ir: IR, known_as: str | None = None, class_name: str | None = None) -> str:
    """Python source of the generated module for a checked IR."""
    return render(plan(ir, known_as, class_name))
