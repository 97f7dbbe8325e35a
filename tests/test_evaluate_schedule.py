"""The evaluation's budget planner: predicted costs, runs not started, and honest coverage."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from icon_dsl.train import eval_schedule as es
from icon_dsl.train import evaluate as ev
from icon_dsl.train.eval_runs import Cell, Job


def _cell(name: str, status: str = "new", column: str = "knn, clustering") -> Cell:
    spec = "mapper = linear(dim=10, softmax=true)\np = knn(x, 10)\nq = cluster(f(x))\n"
    return Cell(name, spec, status, None, column, "clustering", "nmi", False, False)


def test_costs_use_the_prior_scaled_by_the_measured_slowdown() -> None:
    costs = es.Costs()
    prior = es.PRIOR_SECONDS["confirm"]["cluster"]
    assert costs.predict("confirm", "cluster") == pytest.approx(prior)
    costs.observe("baseline", "clustering", 3 * es.PRIOR_SECONDS["baseline"]["clustering"])
    assert costs.predict("confirm", "cluster") == pytest.approx(3 * prior)  # 3x slower here
    costs.observe("tune", "cluster", 2.0)  # tuning runs cost what screening runs do
    assert costs.predict("screen", "cluster") == pytest.approx(2.0)


def test_runner_does_not_start_what_cannot_finish(tmp_path: Path, monkeypatch: Any) -> None:
    """A group predicted past the deadline is not started; a run in flight is not cut."""
    monkeypatch.setattr(es, "_work", lambda job, cell, dim, device: {"metrics": {"seconds": 0.0}})
    cell = _cell("a")
    results = es.Results(tmp_path)
    costs = es.Costs()
    with ThreadPoolExecutor(1) as pool:
        runner = es.Runner(pool, 1, results, {"a": cell}, {}, "cpu", costs, lambda _m: None)  # type: ignore[arg-type]
        fits = [Job("screen", "a", 0)]
        late = [Job("confirm", "a", s, held_out="test") for s in range(3)]
        deadline = time.monotonic() + 2 * es.PRIOR_SECONDS["screen"]["cluster"]
        skipped = runner.run([fits, late], lambda: deadline)
    assert [j.key for j in skipped] == [j.key for j in late]
    assert set(results.results) == {fits[0].key}
    assert (tmp_path / es.RESULTS_FILE).read_text().count("\n") == 1  # written as it arrived


def test_coverage_says_why_a_cell_has_no_row(tmp_path: Path) -> None:
    known, new, late = _cell("k", "known"), _cell("n"), _cell("l")
    results = es.Results(tmp_path)
    for c, v in ((known, 0.7), (new, 0.8)):
        results.add(Job("screen", c.name, 0), {"metrics": {"nmi": v, "seconds": 1.0}})
    results.add(Job("confirm", "k", 0, held_out="test"), {"metrics": {"nmi": 0.7, "seconds": 1}})
    skipped, screened = ev._coverage([known, new, late], results, [0, 1])
    why = {s["name"]: s["why"] for s in skipped}
    assert why["l"].startswith("not screened")
    assert why["n"].startswith("finalist not confirmed")
    assert why["k"].startswith("finalist confirmed on 1 of 2 seeds")
    assert [r["name"] for r in screened] == ["n", "k"] and all(r["finalist"] for r in screened)
