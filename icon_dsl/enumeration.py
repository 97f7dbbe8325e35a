"""The periodic table: walk the registry's families, keep what the checks accept, name the known.

Takes: filters for each axis of the space (p families, q families, mappers, modifiers, metrics,
divergences). Guarantees: `enumerate_methods` builds real spec TEXT for every combination from the
registry (so a block registered there appears here with no change), checks it with the same
`icon_dsl.check` as a written spec, probes the accepted ones once on a small random batch (rows of
p and q sum to 1, the loss is finite), deduplicates by the canonical IR hash, and labels known
methods by structure (known.recognise). The order is deterministic: registry order on every axis.

The only per-family knowledge here is a small table of example instances (`P_EXAMPLES`,
`Q_EXAMPLES`, `MAPPER_EXAMPLES`, `MODIFIER_EXAMPLES`), keyed by registry family; a family missing
from it gets a generic instance built from its block's required arguments (`_generic_call`).
docs/enumeration.md documents the tables.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from . import registry as reg

Status = Literal["known", "new", "rejected"]

# -- spec fragments ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One block call of the spec language, as data: `name(arg, ..., key=value, ...)`."""

    name: str
    args: tuple[str, ...] = ()
    kwargs: tuple[tuple[str, str], ...] = ()

    def with_kw(self, key: str, value: str) -> Call:
        """The same call with `key=value` set (replacing an existing value in place)."""
        if any(k == key for k, _ in self.kwargs):
            kwargs = tuple((k, value if k == key else v) for k, v in self.kwargs)
        else:
            kwargs = (*self.kwargs, (key, value))
        return replace(self, kwargs=kwargs)

    def kw(self, key: str) -> str | None:
        return next((v for k, v in self.kwargs if k == key), None)

    def render(self, **holes: str) -> str:
        parts = [a.format(**holes) for a in self.args]
        parts += [f"{k}={v.format(**holes)}" for k, v in self.kwargs]
        return f"{self.name}(" + ", ".join(parts) + ")"


def _c(name: str, *args: str, **kwargs: str) -> Call:
    return Call(name, args, tuple(kwargs.items()))


@dataclass(frozen=True)
class QForm:
    """A q family's example instances: over items with a network or a table mapper, over columns."""

    network: Call | None
    table: Call | None = None  # None: the network form
    columns: Call | None = None  # over prototype columns; `{n}` is the number of columns
    assignments: bool = False  # f(x) must be soft cluster assignments (a softmax mapper)
    # the paper's limit rows: (regime, the width that stands for it), e.g. ("sigma->0", "0.05")
    limits: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Modifier:
    """How a modifier block wraps a family instance: `{d}` is the wrapped instance."""

    call: Call
    sides: tuple[str, ...] = ("p",)  # which of p, q it wraps
    partner: Call | None = None  # union: the second distribution (skipped when equal to p)
    alternate: Call | None = None  # union: the partner used when p is the partner's family


#: p column -> its canonical instance. None: the family is not a p (cluster needs assignments).
P_EXAMPLES: dict[str, Call | None] = {
    "gaussian": _c("gaussian", "x", perplexity="30"),
    "student_t": _c("student_t", "x"),
    "knn": _c("knn", "x", "10"),
    "label": _c("label", "y"),
    "augmentation": _c("augmentation", "index"),
    "classes": _c("classes", "y", "10"),
    "identity": _c("identity"),
    "uniform": _c("uniform"),
    "cluster": None,
}

#: p column -> its instance on the side input (X-Sample CL, LGSimCLR compare side features by
#: cosine). A family missing here gets its x instance with `x` replaced by the input's name.
SIDE_EXAMPLES: dict[str, Call] = {
    "gaussian": _c("gaussian", "side", temperature="0.1", metric="cosine"),
    "knn": _c("knn", "side", "10", metric="cosine"),
}

#: q row -> its canonical instances.
Q_EXAMPLES: dict[str, QForm] = {
    "gaussian": QForm(
        network=_c("gaussian", "f(x)", temperature="0.5", metric="cosine"),
        table=_c("gaussian", "f(x)"),
        columns=_c("gaussian", "f(x)", "prototypes({n})", metric="dot"),
        limits=(("sigma->inf", "100"), ("sigma->0", "0.05")),
    ),
    "student_t": QForm(
        network=_c("student_t", "f(x)"),
        columns=_c("student_t", "f(x)", "prototypes({n})"),
    ),
    "cluster": QForm(network=_c("cluster", "f(x)"), assignments=True),
}

#: mapper -> (instance for embeddings, instance for cluster assignments).
MAPPER_EXAMPLES: dict[str, tuple[Call, Call]] = {
    "table": (_c("table", dim="2"), _c("table", dim="10", softmax="true")),
    "linear": (_c("linear", dim="16"), _c("linear", dim="10", softmax="true")),
    "mlp": (_c("mlp", dim="64"), _c("mlp", dim="10", softmax="true")),
}

#: modifier -> how it wraps p (and q).
MODIFIER_EXAMPLES: dict[str, Modifier] = {
    "debias": Modifier(_c("debias", "{d}", "0.5")),
    "walk": Modifier(_c("walk", "{d}", steps="1")),
    "union": Modifier(
        _c("union", "{d}", "{partner}"),
        partner=_c("knn", "x", "10"),
        alternate=_c("augmentation", "index"),
    ),
    "joint": Modifier(_c("joint", "{d}"), sides=("p", "q")),
}

#: Example values for required arguments of blocks missing from the tables, by argument kind.
_GENERIC_P_ARG = {"vector": "x", "labels": "y", "index": "index", "modality": "modality"}
_DEFAULT_DIVERGENCES = ("kl", "reverse_kl")


def _example_number(arg: reg.Arg) -> str:
    dom = arg.domain
    if arg.kind == "int":
        return "10"
    if dom is not None and dom.hi <= 1:
        return "0.5"
    return "1"


def _generic_call(block: reg.Block, vector: str) -> Call | None:
    """An instance of `block` from its required arguments; None where one cannot be made."""
    args: list[str] = []
    for arg in block.args:
        if not arg.required:
            continue
        if arg.kind == "vector":
            args.append(vector)
        elif arg.kind in _GENERIC_P_ARG:
            args.append(_GENERIC_P_ARG[arg.kind])
        elif arg.kind in ("int", "real"):
            args.append(_example_number(arg))
        elif arg.kind == "choice" and arg.choices:
            args.append(arg.choices[0])
        elif arg.kind == "dist":
            args.append("{d}")
        else:
            return None
    return Call(block.name, tuple(args))


# -- the axes, read from the registry ------------------------------------------------------------


def _is_modifier(block: reg.Block) -> bool:
    return any(a.kind in ("dist", "weights") for a in block.args)


def _has_vector(block: reg.Block) -> bool:
    return any(a.kind == "vector" for a in block.args)


def _families(role: reg.Role) -> dict[str, reg.Block]:
    """family -> first block of that family with this role, in registry order."""
    out: dict[str, reg.Block] = {}
    for block in reg.blocks(role):
        out.setdefault(block.family, block)
    return out


def p_families() -> list[str]:
    """Every family that can be a p: plain distribution blocks with an example instance."""
    out = []
    for family, block in _families("distribution").items():
        if _is_modifier(block) or P_EXAMPLES.get(family, False) is None:
            continue
        if _p_call(family) is not None:
            out.append(family)
    return out


def q_families() -> list[str]:
    """Every family that can be a learned q: differentiable blocks that take a vector f(x)."""
    out = []
    for family, block in _families("distribution").items():
        if _is_modifier(block) or not block.differentiable or not _has_vector(block):
            continue
        out.append(family)
    return out


def mapper_families() -> list[str]:
    return list(_families("mapper"))


def modifier_names() -> list[str]:
    """Every distribution block that wraps another distribution (debias, walk, union, joint...)."""
    return [b.name for b in reg.blocks("distribution") if any(a.kind == "dist" for a in b.args)]


def divergence_names() -> list[str]:
    return [b.name for b in reg.blocks("divergence")]


def _p_call(family: str) -> Call | None:
    if family in P_EXAMPLES:
        return P_EXAMPLES[family]
    block = _families("distribution").get(family)
    if block is None:
        return None
    call = _generic_call(block, "x")
    return None if call is None or "{d}" in call.args else call


def _q_form(family: str) -> QForm | None:
    if family in Q_EXAMPLES:
        return Q_EXAMPLES[family]
    block = _families("distribution")[family]
    call = _generic_call(block, "f(x)")
    if call is None:
        return None
    columns_block = next(iter(_families("columns").values()), None)
    columns = None
    if block.accepts_columns and columns_block is not None:
        columns = Call(call.name, (call.args[0], f"{columns_block.name}({{n}})", *call.args[1:]))
    return QForm(network=call, columns=columns)


def _mapper_call(family: str, assignments: bool) -> Call | None:
    if family in MAPPER_EXAMPLES:
        return MAPPER_EXAMPLES[family][1 if assignments else 0]
    block = _families("mapper")[family]
    call = _generic_call(block, "x")
    if call is None:
        return None
    if assignments:
        return call.with_kw("softmax", "true") if block.arg("softmax") else None
    return call


def _modifier(name: str) -> Modifier:
    if name in MODIFIER_EXAMPLES:
        return MODIFIER_EXAMPLES[name]
    call = _generic_call(reg.BLOCKS[name], "x")
    if call is None:
        raise ValueError(f"no example instance for modifier {name}: add it to MODIFIER_EXAMPLES")
    return Modifier(call)


# -- candidates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One point of the space: its spec text, its cell, and what the checks made of it."""

    name: str
    spec: str
    p: str  # the p family (column)
    q: str  # the q family (row)
    mapper: str  # the mapper family
    divergence: str
    modifiers: tuple[str, ...]
    metric: str | None  # the q metric when the metric axis is crossed, else None
    known_as: str | None
    status: Status
    reason: str | None = None  # rejected: the diagnostic codes and the first message
    hash: str | None = None  # canonical IR hash (accepted candidates)
    input: str | None = None  # the input a vector p reads (x, side), None for other p
    regime: str = ""  # "", or the paper's limit row of q: "sigma->inf", "sigma->0"
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def row(self) -> str:
        """The table row: the q family, with the limit regime where there is one."""
        return f"{self.q} {self.regime}" if self.regime else self.q

    def record(self) -> dict[str, Any]:
        """The JSON record (contract keys first)."""
        return {
            "name": self.name,
            "spec": self.spec,
            "p": self.p,
            "q": self.q,
            "mapper": self.mapper,
            "known_as": self.known_as,
            "status": self.status,
            "reason": self.reason,
            "hash": self.hash,
            "divergence": self.divergence,
            "modifiers": list(self.modifiers),
            "input": self.input,
            "regime": self.regime,
            "metric": self.metric,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _Axes:
    """One combination of the axes, before it becomes spec text."""

    p: str
    p_input: str | None
    q: str
    regime: str
    mapper: str
    divergence: str
    modifiers: tuple[str, ...]
    metric: str | None


@dataclass(frozen=True)
class _Draft:
    axes: _Axes
    name: str
    spec: str


def _select(axis: str, given: Sequence[str] | None, available: list[str]) -> list[str]:
    if given is None:
        return available
    unknown = [g for g in given if g not in available]
    if unknown:
        raise ValueError(
            f"unknown {axis}: {', '.join(unknown)} (available: {', '.join(available)})"
        )
    return [a for a in available if a in given]


def vector_inputs() -> list[str]:
    """The spec inputs a vector p can read (x, side...), from the registry."""
    return [name for name, kind in reg.INPUTS.items() if kind == "vector"]


def _subsets(names: Sequence[str]) -> Iterator[tuple[str, ...]]:
    """The empty subset, then singletons, pairs, ... each in the given order."""
    for size in range(len(names) + 1):
        yield from itertools.combinations(names, size)


def _diagonal_included(call: Call, family: str) -> bool:
    if call.kw("diagonal") == "true":
        return True
    block = _families("distribution").get(family)
    return bool(block is not None and block.diagonal)


def _takes_diagonal(family: str) -> bool:
    block = _families("distribution").get(family)
    return block is not None and block.arg("diagonal") is not None


def _p_columns(family: str, call: Call) -> int | None:
    """The number of columns of an N x n p (its `n`), None for a p over items."""
    block = _families("distribution").get(family)
    if block is None or block.diagonal is not None:
        return None
    for arg, value in zip([a for a in block.args if a.required], call.args, strict=False):
        if arg.kind == "int" and value.isdigit():
            return int(value)
    return 10


def _p_variants(family: str, base: Call, inputs: list[str]) -> Iterator[tuple[str | None, Call]]:
    """The instances of a p family on each vector input it can read (x, side)."""
    if "x" not in base.args:
        yield None, base
        return
    for name in inputs:
        if name == "x":
            yield name, base
        elif family in SIDE_EXAMPLES and name == "side":
            yield name, SIDE_EXAMPLES[family]
        else:
            yield name, replace(base, args=tuple(name if a == "x" else a for a in base.args))


def _sanitise(text: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_").lower()
    return out if out and not out[0].isdigit() else f"m_{out}"


def _wrap(mod: Modifier, inner: str, p_family: str) -> str | None:
    """`inner` wrapped by a modifier; None where it would be a no-op (union with itself)."""
    holes = {"d": inner}
    if mod.partner is not None:
        partner = mod.partner
        if partner.name == p_family:
            if mod.alternate is None or mod.alternate.name == p_family:
                return None
            partner = mod.alternate
        holes["partner"] = partner.render()
    return mod.call.render(**holes)


@dataclass(frozen=True)
class _Space:
    ps: list[str]
    qs: list[str]
    mappers: list[str]
    modifiers: list[str]
    metrics: list[str] | None
    divergences: list[str]
    inputs: list[str]
    limits: bool


def _drafts(space: _Space) -> Iterator[_Draft]:
    """Every combination, modifiers outermost (the plain table first), in registry order."""
    for mods in _subsets(space.modifiers):
        for p_family in space.ps:
            base_p = _p_call(p_family)
            assert base_p is not None
            for p_input, p_call in _p_variants(p_family, base_p, space.inputs):
                for q_family in space.qs:
                    yield from _cell_drafts(space, p_family, p_input, p_call, q_family, mods)


def _q_variants(
    form: QForm, n_columns: int | None, table: bool, limits: bool
) -> Iterator[tuple[str, Call]]:
    """(regime, q instance): the q family's form for this support and mapper, then its limits."""
    if n_columns is not None:
        base = form.columns
    else:
        base = (form.table or form.network) if table else form.network
    if base is None:
        return
    holes = {"n": str(n_columns)} if n_columns is not None else {}
    base = replace(base, args=tuple(a.format(**holes) for a in base.args))
    yield "", base
    if not limits:
        return
    for regime, width in form.limits:
        kept = tuple((k, v) for k, v in base.kwargs if k == "metric" and n_columns is not None)
        yield regime, replace(base, kwargs=(*kept, ("sigma", width)))


def _cell_drafts(
    space: _Space,
    p_family: str,
    p_input: str | None,
    base_p: Call,
    q_family: str,
    mods: tuple[str, ...],
) -> Iterator[_Draft]:
    form = _q_form(q_family)
    if form is None:
        return
    n_columns = _p_columns(p_family, base_p)
    for mapper_family in space.mappers:
        mapper = _mapper_call(mapper_family, form.assignments)
        if mapper is None:
            continue
        table = not _families("mapper")[mapper_family].parametric
        for regime, q_base in _q_variants(form, n_columns, table, space.limits):
            p_call, q_call = base_p, q_base
            if n_columns is None:
                if _diagonal_included(q_call, q_family) and _takes_diagonal(p_family):
                    p_call = p_call.with_kw("diagonal", "true")
                if _diagonal_included(p_call, p_family) and _takes_diagonal(q_family):
                    q_call = q_call.with_kw("diagonal", "true")
            for q_metric, q_variant in _metric_variants(q_family, q_call, space.metrics):
                wrapped = _apply_modifiers(mods, p_call, q_variant, p_family)
                if wrapped is None:
                    continue
                for divergence in space.divergences:
                    axes = _Axes(p_family, p_input, q_family, regime, mapper_family, divergence,
                                 mods, q_metric)  # fmt: skip
                    yield _draft(axes, mapper, *wrapped)


def _metric_variants(
    q_family: str, q_call: Call, metrics: list[str] | None
) -> Iterator[tuple[str | None, Call]]:
    block = _families("distribution").get(q_family)
    if metrics is None or block is None or block.arg("metric") is None:
        yield None, q_call
        return
    for metric in metrics:
        if metric in block.metrics:
            yield metric, q_call.with_kw("metric", metric)


def _apply_modifiers(
    mods: tuple[str, ...], p_call: Call, q_call: Call, p_family: str
) -> tuple[str, str] | None:
    p_text, q_text = p_call.render(), q_call.render()
    for name in mods:
        mod = _modifier(name)
        if "p" in mod.sides:
            wrapped = _wrap(mod, p_text, p_family)
            if wrapped is None:
                return None
            p_text = wrapped
        if "q" in mod.sides:
            q_text = mod.call.render(d=q_text)
    return p_text, q_text


def _draft(axes: _Axes, mapper: Call, p_text: str, q_text: str) -> _Draft:
    p_part = axes.p if axes.p_input in (None, "x") else f"{axes.p}_{axes.p_input}"
    q_part = f"{axes.q}_{axes.regime}" if axes.regime else axes.q
    parts = [*axes.modifiers, p_part, q_part, axes.mapper]
    if axes.metric is not None:
        parts.append(axes.metric)
    if axes.divergence != "kl":
        parts.append(axes.divergence)
    name = "__".join(_sanitise(part) for part in parts)
    spec = (
        f"method {name}\n"
        f"mapper = {mapper.render()}\n"
        f"p = {p_text}\n"
        f"q = {q_text}\n"
        f"loss = {axes.divergence}(p, q)\n"
    )
    return _Draft(axes, name, spec)


def enumerate_methods(
    p_families: Sequence[str] | None = None,
    q_families: Sequence[str] | None = None,
    mappers: Sequence[str] | None = None,
    modifiers: Sequence[str] = (),
    metrics: Sequence[str] | None = None,
    divergences: Sequence[str] | None = _DEFAULT_DIVERGENCES,
    limit: int | None = None,
    include_rejected: bool = False,
    *,
    inputs: Sequence[str] | None = None,
    limits: bool = True,
    probe: bool = True,
) -> list[Candidate]:
    """List candidate methods: p families x q families x mappers x modifiers x metrics x losses.

    Every axis defaults to everything the registry holds: p families on every vector input (x,
    side), q families with the paper's limit rows (`limits`), all mappers and, for divergences, kl
    and reverse_kl (the exact form of k-means). Modifiers default to none: each subset of the
    given ones is applied, nested in the given order. `metrics=None` keeps each q family's own
    metric; a list crosses q with each. Each candidate is checked like a written spec; accepted
    ones are probed on a random batch (`probe_candidate`) unless `probe=False`; candidates with
    an equal canonical hash are one: the first is kept. `limit` bounds the number returned.
    Raises ValueError for a name an axis does not hold.
    """
    from .api import check
    from .diagnostics import SpecError
    from .known import recognise

    space = _Space(
        ps=_select("p families", p_families, globals()["p_families"]()),
        qs=_select("q families", q_families, globals()["q_families"]()),
        mappers=_select("mappers", mappers, mapper_families()),
        modifiers=[m for m in modifiers if m in _select("modifiers", modifiers, modifier_names())],
        metrics=None if metrics is None else _select("metrics", metrics, list(reg.METRICS)),
        divergences=_select("divergences", divergences or _DEFAULT_DIVERGENCES, divergence_names()),
        inputs=_select("inputs", inputs, vector_inputs()),
        limits=limits,
    )
    out: list[Candidate] = []
    seen: set[str] = set()
    for draft in _drafts(space):
        if limit is not None and len(out) >= limit:
            break
        candidate = _candidate(draft, check, SpecError, recognise, probe)
        key = candidate.hash or draft.spec
        if key in seen or (candidate.status == "rejected" and not include_rejected):
            continue
        seen.add(key)
        out.append(candidate)
    return out


def _candidate(
    draft: _Draft, check: Any, spec_error: type[Exception], recognise: Any, probe: bool
) -> Candidate:
    a = draft.axes
    common: dict[str, Any] = dict(
        name=draft.name, spec=draft.spec, p=a.p, q=a.q, mapper=a.mapper,
        divergence=a.divergence, modifiers=a.modifiers, metric=a.metric, input=a.p_input,
        regime=a.regime,
    )  # fmt: skip
    try:
        checked = check(draft.spec)
    except spec_error as err:
        reason = _reason(err.codes, err.diagnostics)  # type: ignore[attr-defined]
        return Candidate(**common, known_as=None, status="rejected", reason=reason)
    digest = checked.ir.canonical_hash()
    problem = probe_candidate(checked.ir) if probe else None
    notes = sorted({d.code for d in checked.notes})
    if problem is not None and problem.startswith("unprobed"):
        notes.append(problem)
    elif problem is not None:
        return Candidate(**common, known_as=None, status="rejected", reason=problem, hash=digest)
    known = recognise(checked.ir)
    return Candidate(
        **common,
        known_as=known.display if known else None,
        status="known" if known else "new",
        hash=digest,
        notes=tuple(notes),
    )


def _reason(codes: list[str], diagnostics: Sequence[Any]) -> str:
    first = next((d.message for d in diagnostics if d.severity == "error"), "")
    return f"{', '.join(dict.fromkeys(codes))}: {first}"


# -- the runtime probe ---------------------------------------------------------------------------

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

    from .interpret import interpret

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


# -- rendering -----------------------------------------------------------------------------------

_CELL_WIDTH = 16


def column_label(family: str) -> str:
    """The periodic-table column name of a p family (explain.py's labels, else the family)."""
    from .explain import P_COLUMNS

    return P_COLUMNS.get(family, family.replace("_", " "))


def row_label(row: str) -> str:
    """The periodic-table row name of a q family, with its limit regime: `Gaussian sigma->0`."""
    from .explain import Q_ROWS

    family, _, regime = row.partition(" ")
    label = Q_ROWS.get(family, family.replace("_", " "))
    return f"{label} {regime}" if regime else label


def _layout(cands: Sequence[Candidate]) -> tuple[list[str], list[str]]:
    """The p columns and q rows that hold candidates, in registry order."""
    p_order = {f: i for i, f in enumerate(p_families())}
    q_order = {f: i for i, f in enumerate(q_families())}
    regimes = {"": 0, "sigma->inf": 1, "sigma->0": 2}
    cols = sorted({c.p for c in cands}, key=lambda f: (p_order.get(f, len(p_order)), f))
    rows = sorted(
        {(c.q, c.regime) for c in cands},
        key=lambda r: (q_order.get(r[0], len(q_order)), r[0], regimes.get(r[1], 3), r[1]),
    )
    return cols, [f"{q} {regime}" if regime else q for q, regime in rows]


def _cell_names(cell: Sequence[Candidate]) -> tuple[list[str], int, bool]:
    """(known names in order, number of new candidates, whether every candidate was rejected)."""
    names = list(dict.fromkeys(c.known_as for c in cell if c.known_as))
    new = sum(c.status == "new" for c in cell)
    return names, new, bool(cell) and all(c.status == "rejected" for c in cell)


def _cells(cands: Sequence[Candidate]) -> dict[tuple[str, str], list[Candidate]]:
    out: dict[tuple[str, str], list[Candidate]] = {}
    for c in cands:
        out.setdefault((c.p, c.row), []).append(c)
    return out


def render_table(cands: Sequence[Candidate]) -> str:
    """A terminal table laid out like the paper's figure: q rows, p columns, names in cells."""
    import textwrap

    cols, rows = _layout(cands)
    cells = _cells(cands)
    grid: list[list[list[str]]] = []
    for q in rows:
        line: list[list[str]] = [[row_label(q)]]
        for p in cols:
            names, new, rejected = _cell_names(cells.get((p, q), []))
            text: list[str] = []
            for name in names:
                text += textwrap.wrap(name, _CELL_WIDTH)
            if new:
                text.append(f"* {new} new")
            if rejected:
                text.append("x")
            line.append(text or ["."])
        grid.append(line)
    header = [["q \\ p"]] + [textwrap.wrap(column_label(p), _CELL_WIDTH) for p in cols]
    widths = [max(len(s) for r in [header, *grid] for s in r[i]) for i in range(len(cols) + 1)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [sep, *_table_row(header, widths), sep.replace("-", "=")]
    for line in grid:
        out += _table_row(line, widths)
        out.append(sep)
    counts = {s: sum(c.status == s for c in cands) for s in ("known", "new", "rejected")}
    out.append(
        f"{len(cands)} candidates: {counts['known']} known, {counts['new']} new"
        + (f", {counts['rejected']} rejected" if counts["rejected"] else "")
        + ".  * N new: N candidates no one has named;  x: every candidate rejected;"
        + "  .: none.  Details: --format json"
    )
    return "\n".join(out) + "\n"


def _table_row(cells: list[list[str]], widths: list[int]) -> list[str]:
    height = max(len(c) for c in cells)
    return [
        "| " + " | ".join(
            (c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths, strict=True)
        ) + " |"
        for k in range(height)
    ]  # fmt: skip


def one_line(spec: str) -> str:
    """The spec as one line (statements joined by `;`), without its `method` line."""
    stmts = [s for s in spec.splitlines() if s.strip() and not s.startswith(("method ", "#"))]
    return "; ".join(stmts)


GENERATED_BY = "icon-dsl enumerate --format {fmt} --output docs/periodic-table.{ext}"


def render_markdown(cands: Sequence[Candidate], command: str | None = None) -> str:
    cols, rows = _layout(cands)
    cells = _cells(cands)
    cmd = command or GENERATED_BY.format(fmt="markdown", ext="md")
    out = [
        "# The periodic table of I-Con methods",
        "",
        f"Generated by `{cmd}`; do not edit by hand.",
        "Columns are p (the supervisory distribution), rows are q (the learned one). A cell lists",
        "the known methods it holds and how many new candidates (**N new**) the checks accept;",
        "every candidate is listed below with its spec.",
        "",
        "| q \\ p | " + " | ".join(column_label(p) for p in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for q in rows:
        line = [f"**{row_label(q)}**"]
        for p in cols:
            names, new, rejected = _cell_names(cells.get((p, q), []))
            parts = list(names) + ([f"**{new} new**"] if new else []) + (["x"] if rejected else [])
            line.append("<br>".join(parts) or "-")
        out.append("| " + " | ".join(line) + " |")
    counts = {s: sum(c.status == s for c in cands) for s in ("known", "new", "rejected")}
    out += [
        "",
        f"{len(cands)} candidates: {counts['known']} known, {counts['new']} new, "
        f"{counts['rejected']} rejected.",
        "",
        "## Candidates",
        "",
        "| p | q | name | status | spec |",
        "|---|---|---|---|---|",
    ]
    for c in cands:
        status = f"known: {c.known_as}" if c.known_as else c.status
        if c.status == "rejected":
            status = f"rejected ({c.reason})"
        out.append(
            f"| {column_label(c.p)} | {row_label(c.row)} | `{c.name}` | {status} | "
            f"`{one_line(c.spec)}` |"
        )
    return "\n".join(out) + "\n"


def render_json(cands: Sequence[Candidate]) -> str:
    return json.dumps([c.record() for c in cands], indent=2) + "\n"


_HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #bbb; padding: 6px; vertical-align: top; }
th { background: #f0f0f0; }
td.empty { background: #fafafa; color: #aaa; text-align: center; }
details { margin: 2px 0; }
summary { cursor: pointer; white-space: nowrap; }
.known summary { font-weight: bold; color: #14532d; }
.new summary { color: #1e3a8a; }
.rejected summary { color: #991b1b; }
pre { background: #f7f7f7; padding: 4px; font-size: 11px; max-width: 40em; overflow-x: auto; }
"""


def render_html(cands: Sequence[Candidate], command: str | None = None) -> str:
    """A standalone page: the table, each cell listing its candidates with spec and formula."""
    cols, rows = _layout(cands)
    cells = _cells(cands)
    cmd = command or GENERATED_BY.format(fmt="html", ext="html")
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>The periodic table of I-Con methods</title>",
        f"<style>{_HTML_STYLE}</style></head><body>",
        "<h1>The periodic table of I-Con methods</h1>",
        f"<p>Generated by <code>{esc(cmd)}</code>. Columns are p, rows are q; open a",
        "candidate to see its spec and its objective as formulas. Known methods are in bold,",
        "new candidates in blue, rejected ones in red.</p>",
        "<table><tr><th>q \\ p</th>"
        + "".join(f"<th>{esc(column_label(p))}</th>" for p in cols)
        + "</tr>",
    ]
    for q in rows:
        out.append(f"<tr><th>{esc(row_label(q))}</th>")
        for p in cols:
            cell = cells.get((p, q), [])
            if not cell:
                out.append('<td class="empty">-</td>')
                continue
            out.append("<td>" + "".join(_html_candidate(c) for c in cell) + "</td>")
        out.append("</tr>")
    out += ["</table>", "</body></html>"]
    return "\n".join(out) + "\n"


def _html_candidate(c: Candidate) -> str:
    esc = html.escape
    label = c.known_as if c.known_as else f"new: {c.name}"
    if c.status == "rejected":
        label = f"rejected: {c.name}"
    detail = f"<pre>{esc(c.spec)}</pre>"
    if c.status == "rejected":
        detail += f"<pre>{esc(c.reason or '')}</pre>"
    else:
        detail += f"<pre>{esc(candidate_formulas(c))}</pre>"
    return f'<details class="{c.status}"><summary>{esc(label)}</summary>{detail}</details>'


def candidate_formulas(c: Candidate) -> str:
    """The objective as formulas (codegen's docstring text) for an accepted candidate."""
    from .api import check
    from .codegen.emit import formulas

    return "\n".join(formulas(check(c.spec).ir))


RENDERERS: dict[str, Callable[[Sequence[Candidate]], str]] = {
    "table": render_table,
    "markdown": render_markdown,
    "json": render_json,
    "html": render_html,
}


# -- emitting specs ------------------------------------------------------------------------------


def spec_file_text(c: Candidate) -> str:
    """A `.icon` file for a candidate: a comment naming its cell, then the spec."""
    head = (
        f"# {c.status} candidate from `icon-dsl enumerate`: p column '{column_label(c.p)}', "
        f"q row '{row_label(c.row)}', {c.mapper} mapper, {c.divergence}"
    )
    if c.known_as:
        head += f" (known as {c.known_as})"
    return head + "\n" + c.spec


def emit_specs(cands: Iterable[Candidate], directory: str | Any) -> list[Any]:
    """Write each NEW candidate as `<directory>/<name>.icon`; returns the paths written."""
    from pathlib import Path

    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in cands:
        if c.status != "new":
            continue
        path = out_dir / f"{c.name}.icon"
        path.write_text(spec_file_text(c), encoding="utf-8")
        paths.append(path)
    return paths


# -- evaluation ----------------------------------------------------------------------------------

#: Metrics shown for each kind of candidate, the first one ranks the leaderboard.
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "clustering": ("cluster_accuracy", "nmi", "ari"),
    "2-d embedding": ("knn_accuracy", "trustworthiness", "linear_probe_accuracy"),
    "embedding": ("knn_accuracy", "linear_probe_accuracy"),
}
SCORES_FILE = "scores.json"


def candidate_kind(c: Candidate) -> str:
    """clustering (a softmax mapper), 2-d embedding, or embedding."""
    mapper = next(s for s in c.spec.splitlines() if s.startswith("mapper"))
    if "softmax=true" in mapper:
        return "clustering"
    return "2-d embedding" if re.search(r"\bdim=2\b", mapper) else "embedding"


def _baselines(cands: Sequence[Candidate], divergences: Sequence[str] | None) -> list[Candidate]:
    """The known methods of the columns of the new candidates (from the whole default space)."""
    cols = sorted({c.p for c in cands if c.status == "new"})
    if not cols:
        return []
    known = enumerate_methods(p_families=cols, divergences=divergences, probe=False)
    return [c for c in known if c.status == "known"]


def _load_scores(path: Any) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): v for k, v in data.items()} if isinstance(data, dict) else {}


def _write_atomic(path: Any, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def evaluate(
    cands: Sequence[Candidate],
    data: str | None = "digits",
    *,
    out: str | Any = "runs/enumerate",
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    divergences: Sequence[str] | None = _DEFAULT_DIVERGENCES,
    train: Callable[..., Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train every new candidate, and the known methods of its column as baselines, briefly.

    Scores go to `<out>/scores.json` after each candidate: a rerun skips what is scored there
    (same name and hash) and retries failures, so an interrupted evaluation resumes. Writes `<out>/leaderboard.md` and
    `<out>/leaderboard.json`, and returns the leaderboard rows. `train` defaults to the runtime's
    `icon_dsl.train.runtime.train`; a candidate whose training fails is recorded with its error.
    """
    import time
    from pathlib import Path

    if train is None:
        from .train.runtime import train as runtime_train

        train = runtime_train
    say = log or (lambda _msg: None)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores_path = out_dir / SCORES_FILE
    scores = _load_scores(scores_path)
    todo = [c for c in cands if c.status == "new"]
    names = {c.name for c in todo}
    todo += [c for c in _baselines(cands, divergences) if c.name not in names]
    for i, c in enumerate(todo, 1):
        prior = scores.get(c.name)
        tag = f"[{i}/{len(todo)}] {c.name} ({c.known_as or 'new'})"
        if prior is not None and prior.get("hash") == c.hash and "metrics" in prior:
            say(f"{tag}: already scored, skipped")
            continue  # a failed candidate is tried again
        say(f"{tag}: training ...")
        start = time.perf_counter()
        entry: dict[str, Any] = {"hash": c.hash}
        try:
            result = train(
                c.spec, data=data, epochs=epochs, batch_size=batch_size, seed=seed,
                device=device, out=str(out_dir / "runs" / c.name), progress=False,
            )  # fmt: skip
            entry["metrics"] = {k: float(v) for k, v in sorted(dict(result.metrics).items())}
        except Exception as err:  # noqa: BLE001 - one failing candidate must not stop the board
            entry["error"] = f"{type(err).__name__}: {err}".splitlines()[0]
        entry["seconds"] = round(time.perf_counter() - start, 1)
        scores[c.name] = entry
        _write_atomic(scores_path, json.dumps(scores, indent=2, sort_keys=True) + "\n")
        say(f"{tag}: {_summary(c, entry)} ({entry['seconds']} s)")
    rows = leaderboard_rows(todo, scores)
    _write_atomic(out_dir / "leaderboard.json", json.dumps(rows, indent=2) + "\n")
    _write_atomic(out_dir / "leaderboard.md", render_leaderboard(rows, data, epochs))
    return rows


def _summary(c: Candidate, entry: dict[str, Any]) -> str:
    if "error" in entry:
        return f"failed: {entry['error']}"
    metrics = entry.get("metrics", {})
    shown = [k for k in KIND_METRICS[candidate_kind(c)] if k in metrics]
    return ", ".join(f"{k}={metrics[k]:.3f}" for k in shown) or "no metrics"


def leaderboard_rows(
    cands: Sequence[Candidate], scores: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per scored candidate, by p column, best first on the kind's first metric."""
    rows = []
    for c in cands:
        entry = scores.get(c.name)
        if entry is None:
            continue
        kind = candidate_kind(c)
        metrics = entry.get("metrics", {})
        shown = {k: metrics[k] for k in KIND_METRICS[kind] if k in metrics}
        rows.append({
            "name": c.name, "p": c.p, "q": c.q, "mapper": c.mapper, "divergence": c.divergence,
            "status": c.status, "known_as": c.known_as, "kind": kind, "metrics": shown,
            "all_metrics": metrics, "error": entry.get("error"), "seconds": entry.get("seconds"),
            "spec": c.spec,
        })  # fmt: skip
    p_order = {f: i for i, f in enumerate(p_families())}

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        first = KIND_METRICS[row["kind"]][0]
        value = row["metrics"].get(first)
        return (p_order.get(row["p"], 99), row["p"], row["kind"],
                -(value if value is not None else -math.inf), row["name"])  # fmt: skip

    return sorted(rows, key=key)


def render_leaderboard(rows: Sequence[dict[str, Any]], data: str | None, epochs: int | None) -> str:
    out = [
        "# Leaderboard of new candidates against their column's known methods",
        "",
        f"Data: {data or 'digits'}; epochs: {epochs if epochs is not None else 'default'}; "
        "seed 0. Within a column and kind, best first on the first metric.",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["p"], row["kind"]), []).append(row)
    for (p, kind), group in groups.items():
        metrics = KIND_METRICS[kind]
        out += ["", f"## p column: {column_label(p)} ({kind})", ""]
        out.append("| method | status | q | mapper | loss | " + " | ".join(metrics) + " | s |")
        out.append("|---|---|---|---|---|" + "---|" * len(metrics) + "---|")
        for row in group:
            status = f"known: {row['known_as']}" if row["known_as"] else "**new**"
            if row["error"]:
                values = [f"failed: {row['error']}"] + [""] * (len(metrics) - 1)
            else:
                values = [
                    f"{row['metrics'][m]:.3f}" if m in row["metrics"] else "-" for m in metrics
                ]
            out.append(
                f"| `{row['name']}` | {status} | {row_label(row['q'])} | {row['mapper']} | "
                f"{row['divergence']} | " + " | ".join(values) + f" | {row['seconds']} |"
            )
    return "\n".join(out) + "\n"


# -- the command line ----------------------------------------------------------------------------


def _csv(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def run_command(args: Any) -> int:
    """`icon-dsl enumerate`: list, render, emit, evaluate. Returns the exit status."""
    import sys
    from pathlib import Path

    try:
        cands = enumerate_methods(
            p_families=args.p,
            q_families=args.q,
            mappers=args.mapper,
            modifiers=_csv(args.modifiers) or (),
            metrics=_csv(args.metrics),
            divergences=_csv(args.divergences) or _DEFAULT_DIVERGENCES,
            limit=args.limit,
            include_rejected=args.include_rejected,
        )
    except ValueError as err:
        print(f"icon-dsl enumerate: error: {err}", file=sys.stderr)
        return 2
    text = RENDERERS[args.format](cands)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(cands)} candidates)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.emit:
        paths = emit_specs(cands, args.emit)
        print(f"wrote {len(paths)} new specs to {args.emit}/", file=sys.stderr)
    if args.evaluate is not None:
        data = None if args.evaluate == "digits" else args.evaluate
        from .train.data import load_dataset

        try:
            load_dataset(data)  # a bad path fails once here, not once per candidate
        except ValueError as err:
            print(f"icon-dsl enumerate: error: {err}", file=sys.stderr)
            return 2
        evaluate(
            cands, data, out=args.eval_out, epochs=args.epochs, seed=args.seed,
            device=args.device, divergences=_csv(args.divergences) or _DEFAULT_DIVERGENCES,
            log=lambda msg: print(msg, file=sys.stderr, flush=True),
        )  # fmt: skip
        print(f"wrote {args.eval_out}/leaderboard.md and leaderboard.json", file=sys.stderr)
    return 0
