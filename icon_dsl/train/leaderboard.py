"""The leaderboard: confirmed rows with intervals, the verdict per column, the files.

Takes: the results of an evaluation (`results.jsonl`, keyed by job). Guarantees: one row per
confirmed candidate and per baseline, by column: mean, std (ddof 1) and the 95 % Student-t
interval of the mean over seeds; a new row "beats" its column only when its interval lies
entirely above the best known method's (non-overlapping t-intervals: conservative);
`leaderboard.json` (the contract's keys and `beats_best_known`), `leaderboard.md` (a summary
per column, the rows, what was screened, and what was not evaluated with why) and
`not_evaluated.json`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icon_dsl.train.eval_data import Benchmark
from icon_dsl.train.eval_runs import KIND_METRIC, Cell, result_value


def interval(values: Sequence[float]) -> tuple[float, float, float, float]:
    """mean, std (ddof 1), and the 95 % Student-t interval of the mean."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, float("nan"), float("nan"), float("nan")
    std = float(arr.std(ddof=1))
    half = float(stats.t.ppf(0.975, arr.size - 1)) * std / math.sqrt(arr.size)
    return mean, std, mean - half, mean + half


def leaderboard(all_cells: Sequence[Cell], results: dict[str, dict[str, Any]],
                kinds: Sequence[str], seeds: Sequence[int]) -> list[dict[str, Any]]:  # fmt: skip
    """Confirmed candidates and baselines, by column, best first, with intervals."""
    rows: list[dict[str, Any]] = []
    columns = sorted({c.column for c in all_cells if c.skip is None})
    baseline: dict[str, dict[str, list[float]]] = {}
    for e in results.values():
        if e["job"]["stage"] == "baseline" and "rows" in e:
            kind = e["job"]["name"].split("|", 1)[1]
            for label, metrics in e["rows"].items():
                baseline.setdefault(f"{label}|{kind}", {}).setdefault(
                    KIND_METRIC[kind], []).append(metrics.get(KIND_METRIC[kind], float("nan")))  # fmt: skip
    for column in columns:
        kind = column.rsplit(", ", 1)[1]
        metric = KIND_METRIC[kind]
        for c in [c for c in all_cells if c.column == column and c.skip is None]:
            values = [
                v for e in results.values()
                if e["job"]["stage"] == "confirm" and e["job"]["name"] == c.name
                and (v := result_value(e, metric)) is not None
            ]  # fmt: skip
            if not values:
                continue
            rows.append(_row(c.name, c.status, c.known_as, column, metric, values))
        for key, metrics in baseline.items():
            label, bkind = key.split("|")
            if bkind == kind:
                rows.append(_row(label, "baseline", None, column, metric, metrics[metric]))
    _mark_beats(rows)
    rows.sort(key=lambda r: (r["column"], -(r["mean"] if math.isfinite(r["mean"]) else -9)))
    return rows


def _row(name: str, status: str, known_as: str | None, column: str, metric: str,
         values: Sequence[float]) -> dict[str, Any]:  # fmt: skip
    mean, std, lo, hi = interval(values)
    return {"name": name, "status": status, "known_as": known_as, "column": column,
            "metric": metric, "mean": mean, "std": std, "ci_low": lo, "ci_high": hi,
            "n_seeds": len(values), "beats_best_known": None}  # fmt: skip


def _mark_beats(rows: list[dict[str, Any]]) -> None:
    for column in {r["column"] for r in rows}:
        group = [r for r in rows if r["column"] == column]
        known = [r for r in group if r["status"] == "known"]
        if not known:
            continue
        best = max(known, key=lambda r: r["mean"])
        for r in group:
            if r["status"] == "new":
                r["beats_best_known"] = bool(
                    math.isfinite(r["ci_low"]) and math.isfinite(best["ci_high"])
                    and r["ci_low"] > best["ci_high"]
                )  # fmt: skip


def write_leaderboard(out: Path, rows: Sequence[dict[str, Any]], skipped: Sequence[dict[str, Any]],
                      screened: Sequence[dict[str, Any]], bench: Benchmark,
                      protocol: Any) -> None:  # fmt: skip
    """leaderboard.json, not_evaluated.json, screening.json and leaderboard.md in `out`."""
    (out / "leaderboard.json").write_text(json.dumps(list(rows), indent=2) + "\n", encoding="utf-8")
    (out / "not_evaluated.json").write_text(json.dumps(list(skipped), indent=2) + "\n", "utf-8")
    (out / "screening.json").write_text(json.dumps(list(screened), indent=2) + "\n", "utf-8")
    text = render_leaderboard(rows, skipped, bench, protocol) + render_screening(screened)
    (out / "leaderboard.md").write_text(text, encoding="utf-8")


def render_screening(screened: Sequence[dict[str, Any]]) -> str:
    """The screening step: every screened cell's validation score, by column, best first."""
    if not screened:
        return ""
    out = ["", "## Screening (validation part, one seed, short runs)", "",
           "| column | candidate | status | validation score | finalist |",
           "|---|---|---|---|---|"]  # fmt: skip
    for r in screened:
        v = r["score"]
        shown = "failed" if v is None else f"{v:.3f}"
        status = f"known: {r['known_as']}" if r["status"] == "known" else r["status"]
        out.append(f"| {r['column']} | `{r['name']}` | {status} | {shown} | "
                   f"{'yes' if r['finalist'] else ''} |")  # fmt: skip
    return "\n".join(out) + "\n"


def _fmt(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.3f}"


def summary_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One line per column: its best known method, best new candidate, best baseline, verdict."""
    out = [
        "| column | metric | best known | best new | best baseline | a new cell beats the best known |",
        "|---|---|---|---|---|---|",
    ]

    def cell(r: dict[str, Any] | None) -> str:
        if r is None:
            return "-"
        name = r["known_as"] or r["name"]
        return f"{name}: {_fmt(r['mean'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] ({r['n_seeds']})"

    for column in sorted({r["column"] for r in rows}):
        group = [r for r in rows if r["column"] == column]

        def best(status: str, group: list[dict[str, Any]] = group) -> dict[str, Any] | None:
            members = [r for r in group if r["status"] == status and math.isfinite(r["mean"])]
            return max(members, key=lambda r: r["mean"]) if members else None

        known, new = best("known"), best("new")
        if known is None or new is None:
            verdict = "not decided (no confirmed known or new row)"
        elif min(known["n_seeds"], new["n_seeds"]) < 2:
            verdict = "not decided (a best row has fewer than 2 seeds: no interval)"
        elif any(r["beats_best_known"] for r in group):
            verdict = "**yes**: " + ", ".join(
                f"`{r['name']}`" for r in group if r["beats_best_known"]
            )
        else:
            verdict = "no"
        out.append(
            f"| {column} | {group[0]['metric']} | {cell(known)} | {cell(new)} | "
            f"{cell(best('baseline'))} | {verdict} |"
        )
    return "\n".join(out) + "\n"


def render_leaderboard(rows: Sequence[dict[str, Any]], skipped: Sequence[dict[str, Any]],
                       bench: Benchmark, protocol: Any) -> str:  # fmt: skip
    out = [
        f"# Leaderboard: {bench.name}",
        "",
        f"Train {bench.train.n_samples} rows, test {bench.test.n_samples} rows; {protocol.seeds} "
        f"seeds; budget {protocol.budget_minutes:g} min over {protocol.jobs} jobs. Mean, std and "
        "95 % t-interval over seeds, on the test part. A new row beats its column only when its "
        "interval lies above the best known method's.",
        "",
        *[f"- {n}" for n in bench.notes],
        "",
        "## Summary",
        "",
        summary_markdown(rows).rstrip(),
    ]
    for column in sorted({r["column"] for r in rows}):
        group = [r for r in rows if r["column"] == column]
        out += ["", f"## {column} ({group[0]['metric']})", "",
                "| method | status | mean | std | 95 % interval | seeds | beats best known |",
                "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in group:
            status = f"known: {r['known_as']}" if r["status"] == "known" else r["status"]
            beats = {True: "**yes**", False: "no", None: ""}[r["beats_best_known"]]
            out.append(
                f"| `{r['name']}` | {status} | {_fmt(r['mean'])} | {_fmt(r['std'])} | "
                f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | {r['n_seeds']} | {beats} |"
            )
    if skipped:
        out += ["", f"## Not evaluated, or evaluated only in part ({len(skipped)})", ""]
        out += [f"- `{s['name']}` ({s['column']}): {s['why']}" for s in skipped]
    return "\n".join(out) + "\n"
