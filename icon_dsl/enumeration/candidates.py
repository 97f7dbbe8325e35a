"""From drafts to candidates: checked, probed, degenerate ones marked, rescalings merged, named.

Takes: the axes' filters. Guarantees: `enumerate_methods` checks every draft with the same
pipeline as a written spec, probes the accepted ones (`probe`), marks the degenerate ones
(`icon_dsl.checks.degeneracy`), names known methods by structure (`icon_dsl.known`), and merges
candidates that are one objective up to a rescaling of f(x) (`equivalence`): one record is kept
(a known one where there is one) and lists the others in `same_as`; they get status `duplicate`.
Status is one of `known`, `new`, `duplicate`, `degenerate`, `rejected`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .. import registry as reg
from ..api import check
from ..diagnostics import SpecError
from ..known import recognise
from ..scaling import scale_free_kernels
from . import space as sp
from .equivalence import as_records, merge
from .limits import LIMITS
from .probe import flush as flush_probes
from .probe import probe_candidate

Status = Literal["known", "new", "duplicate", "degenerate", "rejected"]
STATUSES: tuple[str, ...] = ("known", "new", "duplicate", "degenerate", "rejected")


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
    reason: str | None = None  # rejected / degenerate / duplicate: why
    hash: str | None = None  # canonical IR hash (accepted candidates)
    input: str | None = None  # the input a vector p reads (x, side), None for other p
    regime: str = ""  # "", or the paper's limit row of q: "sigma->inf", "sigma->0"
    notes: tuple[str, ...] = field(default=(), compare=False)
    same_as: tuple[str, ...] = ()  # kept record: the duplicates; a duplicate: the kept record
    equivalence: str | None = None  # a duplicate: the evidence (sympy proof or numeric probe)
    limit: str | None = None  # a limit row: the leading term it stands for

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
            "same_as": list(self.same_as),
            "hash": self.hash,
            "divergence": self.divergence,
            "modifiers": list(self.modifiers),
            "input": self.input,
            "regime": self.regime,
            "metric": self.metric,
            "equivalence": self.equivalence,
            "limit": self.limit,
            "notes": list(self.notes),
        }


def enumerate_methods(
    p_families: Sequence[str] | None = None,
    q_families: Sequence[str] | None = None,
    mappers: Sequence[str] | None = None,
    modifiers: Sequence[str] = (),
    metrics: Sequence[str] | None = None,
    divergences: Sequence[str] | None = sp._DEFAULT_DIVERGENCES,
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
    ones are probed on a random batch (`probe_candidate`) unless `probe=False`; drafts with an
    equal canonical hash are one text (the first is kept); candidates equal up to a rescaling
    of f(x) are merged (`equivalence`). `limit` bounds the number returned. Raises ValueError
    for a name an axis does not hold.
    """
    space = sp._Space(
        ps=sp._select("p families", p_families, sp.p_families()),
        qs=sp._select("q families", q_families, sp.q_families()),
        mappers=sp._select("mappers", mappers, sp.mapper_families()),
        modifiers=[
            m for m in modifiers if m in sp._select("modifiers", modifiers, sp.modifier_names())
        ],
        metrics=None if metrics is None else sp._select("metrics", metrics, list(reg.METRICS)),
        divergences=sp._select(
            "divergences", divergences or sp._DEFAULT_DIVERGENCES, sp.divergence_names()
        ),
        inputs=sp._select("inputs", inputs, sp.vector_inputs()),
        limits=limits,
    )
    out: list[Candidate] = []
    irs: list[Any] = []
    seen: set[str] = set()
    for draft in sp._drafts(space):
        if limit is not None and len(out) >= limit:
            break
        candidate, ir = _candidate(draft, check, SpecError, recognise, probe)
        key = candidate.hash or draft.spec
        if key in seen or (candidate.status == "rejected" and not include_rejected):
            continue
        seen.add(key)
        out.append(candidate)
        irs.append(ir)
    if probe:
        flush_probes()
    return _merged(out, irs)


def _merged(cands: list[Candidate], irs: list[Any]) -> list[Candidate]:
    live = [ir if c.status != "rejected" else None for c, ir in zip(cands, irs, strict=True)]
    prefer = [c.status == "known" for c in cands]
    fields = as_records(merge(live, prefer), [c.name for c in cands])
    return [replace(c, **fields[i]) if i in fields else c for i, c in enumerate(cands)]


def _candidate(
    draft: sp._Draft, check: Any, spec_error: type[Exception], recognise: Any, probe: bool
) -> tuple[Candidate, Any]:
    a = draft.axes
    common: dict[str, Any] = dict(
        name=draft.name, spec=draft.spec, p=a.p, q=a.q, mapper=a.mapper,
        divergence=a.divergence, modifiers=a.modifiers, metric=a.metric, input=a.p_input,
        regime=a.regime, limit=_limit_text(a.regime),
    )  # fmt: skip
    try:
        checked = check(draft.spec)
    except spec_error as err:
        why = _reason(err.codes, err.diagnostics)  # type: ignore[attr-defined]
        return Candidate(**common, known_as=None, status="rejected", reason=why), None
    digest = checked.ir.canonical_hash()
    problem = probe_candidate(checked.ir) if probe else None
    notes = sorted({d.code for d in checked.notes})
    if problem is not None and problem.startswith("unprobed"):
        notes.append(problem)
    elif problem is not None:
        rejected = Candidate(
            **common, known_as=None, status="rejected", reason=problem, hash=digest
        )
        return rejected, None
    if common["limit"] is not None and scale_free_kernels(checked.ir):
        common["limit"] = None  # the width is absorbed: this row is the plain row, not a limit
    known = recognise(checked.ir)
    degenerate = [d.message for d in checked.notes if d.code == "degenerate"]
    status: Status = "degenerate" if degenerate else ("known" if known else "new")
    reason: str | None = f"degenerate: {degenerate[0]}" if degenerate else None
    cand = Candidate(
        **common,
        known_as=known.display if known else None,
        status=status,
        reason=reason,
        hash=digest,
        notes=tuple(notes),
    )
    return cand, checked.ir


def _limit_text(regime: str) -> str | None:
    if not regime:
        return None
    return LIMITS[regime].leading_term


def _reason(codes: list[str], diagnostics: Sequence[Any]) -> str:
    first = next((d.message for d in diagnostics if d.severity == "error"), "")
    return f"{', '.join(dict.fromkeys(codes))}: {first}"
