"""The space of candidates: the registry's families crossed into spec text (stage 1 of 5).

Takes: filters for each axis (p families, q families, mappers, modifiers, metrics, divergences).
Guarantees: `drafts` yields real spec TEXT for every combination, in registry order on every axis,
modifiers outermost (the plain table first). The only per-family knowledge is a small table of
example instances (`P_EXAMPLES`, `Q_EXAMPLES`, `MAPPER_EXAMPLES`, `MODIFIER_EXAMPLES`) keyed by
registry family; a family missing from it gets a generic instance built from its block's required
arguments (`_generic_call`); both live in `vocabulary`. docs/enumeration.md documents the tables.

The later stages: `probe` (does it run), `equivalence` (is it another candidate up to a rescaling),
`limits` (what the sigma-limit rows stand for), `candidates` (checks, degeneracy, naming), then
`render` / `emit` and the command line (`cli`). Evaluation lives beside the training runtime
(`icon_dsl.train.evaluate`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from .. import registry as reg
from ..scaling import SCALED_METRICS
from .vocabulary import (
    _DEFAULT_DIVERGENCES,
    _GENERIC_P_ARG,
    LIMIT_METRIC,
    MAPPER_EXAMPLES,
    MODIFIER_EXAMPLES,
    P_EXAMPLES,
    Q_EXAMPLES,
    SIDE_EXAMPLES,
    Call,
    Modifier,
    QForm,
    _c,
    _example_number,
    _families,
    _generic_call,
    _has_vector,
    _is_modifier,
    _mapper_call,
    _modifier,
    _p_call,
    _q_form,
    divergence_names,
    mapper_families,
    modifier_names,
    p_families,
    q_families,
)

__all__ = [
    "Call",
    "LIMIT_METRIC",
    "MAPPER_EXAMPLES",
    "MODIFIER_EXAMPLES",
    "Modifier",
    "P_EXAMPLES",
    "QForm",
    "Q_EXAMPLES",
    "SIDE_EXAMPLES",
    "_DEFAULT_DIVERGENCES",
    "_GENERIC_P_ARG",
    "_c",
    "_example_number",
    "_families",
    "_generic_call",
    "_has_vector",
    "_is_modifier",
    "_mapper_call",
    "_modifier",
    "_p_call",
    "_q_form",
    "divergence_names",
    "mapper_families",
    "modifier_names",
    "p_families",
    "q_families",
]  # the vocabulary, re-exported: space is the stage's entry point


# -- candidates ----------------------------------------------------------------------------------


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
    q_modifiers: tuple[str, ...] = ()  # modifiers that also wrap q (debias both sides)
    tag: str = ""  # a name tag for a second instance of one row (the cosine limit row)


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
        extra = dict(mod.extra).get(p_family, ())
        holes["partner"] = ", ".join([partner.render(), *(c.render() for c in extra)])
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
) -> Iterator[tuple[str, Call, str]]:
    """(regime, q instance, name tag): the q family's form for this support and mapper, then its
    limit rows. A limit row on the base's own metric is kept where that metric is scaled by f(x)
    (euclidean, dot): the equivalence stage shows it to be the plain row; the bounded-metric
    (cosine) instance, where the width is real, is the limit row proper."""
    if n_columns is not None:
        base = form.columns
    else:
        base = (form.table or form.network) if table else form.network
    if base is None:
        return
    holes = {"n": str(n_columns)} if n_columns is not None else {}
    base = replace(base, args=tuple(a.format(**holes) for a in base.args))
    yield "", base, ""
    if not limits:
        return
    metric = base.kw("metric") or "euclidean"
    for regime, width in form.limits:
        if metric in SCALED_METRICS:
            yield regime, replace(base, kwargs=(("sigma", width), ("metric", metric))), ""
        tag = LIMIT_METRIC if metric != LIMIT_METRIC else ""
        yield regime, replace(base, kwargs=(("sigma", width), ("metric", LIMIT_METRIC))), tag


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
        for regime, q_base, tag in _q_variants(form, n_columns, table, space.limits):
            p_call, q_call = base_p, q_base
            if n_columns is None:
                if _diagonal_included(q_call, q_family) and _takes_diagonal(p_family):
                    p_call = p_call.with_kw("diagonal", "true")
                if _diagonal_included(p_call, p_family) and _takes_diagonal(q_family):
                    q_call = q_call.with_kw("diagonal", "true")
            metrics = None if regime else space.metrics  # a limit row keeps its metric
            for q_metric, q_variant in _metric_variants(q_family, q_call, metrics):
                for p_text, q_text, on_q in _apply_modifiers(
                    mods, p_call, q_variant, p_family, q_family
                ):
                    for divergence in space.divergences:
                        axes = _Axes(p_family, p_input, q_family, regime, mapper_family,
                                     divergence, mods, q_metric, on_q, tag)  # fmt: skip
                        yield _draft(axes, mapper, p_text, q_text)


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
    mods: tuple[str, ...], p_call: Call, q_call: Call, p_family: str, q_family: str
) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(p text, q text, the modifiers that also wrap q) for each variant of the modifiers."""
    variants: list[tuple[str, str, tuple[str, ...]]] = [(p_call.render(), q_call.render(), ())]
    for name in mods:
        mod = _modifier(name)
        grown = []
        for p_text, q_text, on_q in variants:
            if "p" in mod.sides:
                wrapped = _wrap(mod, p_text, p_family)
                if wrapped is None:
                    return
                p_text = wrapped
            if "q" in mod.sides:
                q_text = mod.call.render(d=q_text)
            grown.append((p_text, q_text, on_q))
            if q_family in mod.also_q and "q" not in mod.sides:
                grown.append((p_text, mod.call.render(d=q_text), (*on_q, name)))
        variants = grown
    yield from variants


def _draft(axes: _Axes, mapper: Call, p_text: str, q_text: str) -> _Draft:
    p_part = axes.p if axes.p_input in (None, "x") else f"{axes.p}_{axes.p_input}"
    q_part = "_".join(part for part in (axes.q, axes.regime, axes.tag) if part)
    q_part = "_".join([*axes.q_modifiers, q_part])
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
