"""The periodic table: known cells named, the paper's gaps new, no duplicates, determinism,
emitted specs that compile into row-stochastic modules, and a sound deduplication."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT

from icon_dsl import enumeration as en
from icon_dsl.api import check, compile
from icon_dsl.diagnostics import SpecError
from icon_dsl.interpret import interpret
from icon_dsl.known import by_key


@cache
def default_space() -> tuple[en.Candidate, ...]:
    return tuple(en.enumerate_methods())


def cell(p: str, q: str, regime: str = "", cands: tuple[en.Candidate, ...] | None = None):
    return [c for c in (cands or default_space()) if c.p == p and c.q == q and c.regime == regime]


# -- the paper's table ---------------------------------------------------------------------------

# (p family, q family, q limit regime, known.py key): the I-Con paper's table, every cell the
# registry expresses today.
KNOWN_CELLS = [
    ("gaussian", "gaussian", "", "sne"),
    ("gaussian", "gaussian", "", "xsample"),
    ("knn", "gaussian", "", "sne_uniform"),
    ("knn", "gaussian", "", "lgsimclr"),
    ("augmentation", "gaussian", "", "simclr"),
    ("cross_modal", "gaussian", "", "clip"),
    ("label", "gaussian", "", "supcon"),
    ("classes", "gaussian", "", "cross_entropy"),
    ("identity", "gaussian", "sigma->inf", "pca"),
    ("augmentation", "gaussian", "sigma->inf", "vicreg"),
    ("augmentation", "gaussian", "sigma->0", "triplet"),
    ("gaussian", "student_t", "", "tsne"),
    ("graph", "student_t", "", "tsne_graph"),
    ("knn", "student_t", "", "tsne_uniform"),
    ("augmentation", "student_t", "", "tsimclr"),
    ("classes", "student_t", "", "harmonic"),
    ("gaussian", "cluster", "", "kmeans"),
    ("graph", "cluster", "", "normalized_cuts"),
    ("knn", "cluster", "", "dcd"),
    ("augmentation", "cluster", "", "infonce_clustering"),
]


@pytest.mark.parametrize("p, q, regime, key", KNOWN_CELLS)
def test_known_cell_is_named(p: str, q: str, regime: str, key: str) -> None:
    method = by_key(key)
    assert method is not None, key
    names = {c.known_as for c in cell(p, q, regime)}
    assert method.display in names, (p, q, regime, sorted(n for n in names if n))


def test_modifier_cells_are_named() -> None:
    debiased = en.enumerate_methods(p_families=["augmentation"], modifiers=["debias"])
    joint = en.enumerate_methods(p_families=["gaussian"], q_families=["student_t"],
                                 modifiers=["joint"], inputs=["x"])  # fmt: skip
    assert by_key("debiased_tsimclr").display in {c.known_as for c in debiased}  # type: ignore[union-attr]
    assert by_key("tsne_joint").display in {c.known_as for c in joint}  # type: ignore[union-attr]


# The gaps in the I-Con paper's table, as cells: each holds new candidates the checks accept.
PAPER_GAPS = {
    "t-SupCon": ("label", "student_t", ""),
    "t-CLIP": ("cross_modal", "student_t", ""),
    "doubly t-SNE": ("student_t", "student_t", ""),
    "dual t-SNE": ("student_t", "gaussian", ""),
    "SNE graph embedding": ("graph", "gaussian", ""),
    "t k-means": ("student_t", "cluster", ""),
    "supervised clustering": ("label", "cluster", ""),
    "triplet SupCon": ("label", "gaussian", "sigma->0"),
    "triplet CLIP": ("cross_modal", "gaussian", "sigma->0"),
}


@pytest.mark.parametrize("gap", sorted(PAPER_GAPS))
def test_paper_gap_is_new(gap: str) -> None:
    p, q, regime = PAPER_GAPS[gap]
    found = cell(p, q, regime)
    assert any(c.status == "new" for c in found), (gap, [(c.name, c.status) for c in found])
    assert all(c.known_as is None for c in found if c.mapper != "table" or p != "graph")


def test_t_supcon_spec() -> None:
    """The paper's t-SupCon is SupCon's p with t-SimCLR's q on a network."""
    [c] = [c for c in cell("label", "student_t") if c.mapper == "mlp" and c.divergence == "kl"]
    assert "p = label(y)" in c.spec and "q = student_t(f(x))" in c.spec
    assert c.status == "new" and c.known_as is None


# -- the space -----------------------------------------------------------------------------------


def test_no_duplicates() -> None:
    cands = default_space()
    for attr in ("name", "spec", "hash"):
        values = [getattr(c, attr) for c in cands]
        assert len(values) == len(set(values)), attr


def test_default_space_statuses() -> None:
    cands = default_space()
    assert {c.status for c in cands} == {"known", "new"}
    assert all(c.hash for c in cands)
    assert sum(c.status == "known" for c in cands) >= len(KNOWN_CELLS)


def test_rejected_have_reasons() -> None:
    cands = en.enumerate_methods(p_families=["knn", "cross_modal"], include_rejected=True)
    rejected = [c for c in cands if c.status == "rejected"]
    assert rejected
    codes = {c.reason.split(":")[0] for c in rejected if c.reason}
    assert len(codes) >= 2, codes  # checker codes (diagonal-mismatch...) and the probe's
    assert all(c.reason and c.known_as is None for c in rejected)
    # reverse KL against an indicator p is infinite: the checker rejects it
    [rk] = [c for c in rejected if c.name == "knn__gaussian__mlp__reverse_kl"]
    assert rk.reason is not None and rk.reason.startswith("infinite-divergence")


def test_filters_and_limit() -> None:
    cands = en.enumerate_methods(p_families=["label"], q_families=["student_t"], mappers=["mlp"])
    assert {(c.p, c.q, c.mapper) for c in cands} == {("label", "student_t", "mlp")}
    assert len(en.enumerate_methods(limit=5)) == 5
    with pytest.raises(ValueError, match="unknown p families: nope"):
        en.enumerate_methods(p_families=["nope"])
    with pytest.raises(ValueError, match="unknown modifiers"):
        en.enumerate_methods(modifiers=["nope"])


def test_metrics_axis() -> None:
    cands = en.enumerate_methods(p_families=["augmentation"], q_families=["gaussian"],
                                 mappers=["mlp"], metrics=["euclidean", "cosine"],
                                 divergences=["kl"], limits=False)  # fmt: skip
    assert sorted(c.metric or "" for c in cands) == ["cosine", "euclidean"]
    assert {c.known_as for c in cands} >= {by_key("simclr").display}  # type: ignore[union-attr]


def test_new_registry_block_appears(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block added to the registry shows up with no change here (generic example args)."""
    from icon_dsl import registry as reg

    block = reg.Block(
        "same_cluster", "distribution", (reg.Arg("y", "labels"),), doc="test", formula="test",
        family="same_cluster", rep="mask", differentiable=False, may_be_empty=True,
    )  # fmt: skip
    monkeypatch.setitem(reg.BLOCKS, "same_cluster", block)
    assert "same_cluster" in en.p_families()
    assert "same_cluster" not in en.q_families()
    cands = en.enumerate_methods(p_families=["same_cluster"], mappers=["mlp"], limits=False)
    [c] = [c for c in cands if c.q == "student_t" and c.divergence == "kl"]
    assert "p = same_cluster(y)" in c.spec and c.status == "new"
    assert any(n.startswith("unprobed") for n in c.notes)  # the interpreter has no rule yet


# -- determinism and speed -----------------------------------------------------------------------


def _cli(*args: str, seed: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    return subprocess.run(
        [sys.executable, "-m", "icon_dsl.cli", "enumerate", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, check=True,
    )  # fmt: skip


def test_json_is_deterministic_across_processes() -> None:
    start = time.perf_counter()
    a = _cli("--format", "json", seed="1").stdout
    elapsed = time.perf_counter() - start
    b = _cli("--format", "json", seed="2").stdout
    assert a == b
    records = json.loads(a)
    assert {"spec", "p", "q", "mapper", "known_as", "status", "reason"} <= set(records[0])
    print(f"icon-dsl enumerate --format json (full default space): {elapsed:.2f} s wall")
    # the standard is a benchmark (benchmarks/enumeration.py); this bound is generous
    assert elapsed < 60


def test_renderers_are_pure() -> None:
    cands = list(default_space())
    for fmt, render in en.RENDERERS.items():
        assert render(cands) == render(cands), fmt
    table = en.render_table(cands)
    assert "SimCLR" in table and "* " in table and "q \\ p" in table


def test_html_is_well_formed() -> None:
    from html.parser import HTMLParser

    cands = list(default_space())[:40]
    page = en.render_html(cands)
    stack: list[str] = []
    void = {"meta", "br"}

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: object) -> None:
            if tag not in void:
                stack.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert stack and stack.pop() == tag, tag

    Parser().feed(page)
    assert stack == [] and page.count("<details") == len(cands)
    assert page.count("<pre>") == 2 * len(cands)  # the spec and its formulas


def test_cli_bad_data_is_usage_error(tmp_path: Path) -> None:
    from icon_dsl.cli import main

    args = ["enumerate", "--p", "label", "--q", "student_t", "--mapper", "mlp"]
    assert main([*args, "--evaluate", str(tmp_path / "missing.npy"), "--eval-out",
                 str(tmp_path)]) == 2  # fmt: skip


def test_docs_are_current() -> None:
    """docs/periodic-table.{md,html}: regenerate with the commands in docs/enumeration.md."""
    cands = list(default_space())
    md = (ROOT / "docs" / "periodic-table.md").read_text(encoding="utf-8")
    page = (ROOT / "docs" / "periodic-table.html").read_text(encoding="utf-8")
    hint = "stale: run icon-dsl enumerate --format {0} --output docs/periodic-table.{1}"
    assert md == en.render_markdown(cands), hint.format("markdown", "md")
    assert page == en.render_html(cands), hint.format("html", "html")


# -- emitted specs -------------------------------------------------------------------------------


def _module_inputs(cls: type[Any], batch: dict) -> dict[str, torch.Tensor]:
    return {name: batch["inputs"][name] for name in getattr(cls, "INPUTS", ())}


def _instantiate(cls: type[Any], z: torch.Tensor, batch: dict) -> Any:
    kwargs: dict[str, object] = {}
    params = inspect.signature(cls).parameters
    if "embedding_dim" in params:
        kwargs["embedding_dim"] = z.shape[1]
    if "adjacency" in params:
        kwargs["adjacency"] = batch["inputs"]["adjacency"]
    missing = [n for n, p in params.items() if n != "self" and p.default is p.empty
               and n not in kwargs and p.kind is not p.VAR_KEYWORD]  # fmt: skip
    assert not missing, f"{cls.__name__} needs {missing}"
    return cls(**kwargs)


def _assert_stochastic(mat: torch.Tensor, what: str) -> None:
    rows = mat.sum(1)
    kept = rows[rows > 0]
    if torch.allclose(mat.sum(), mat.new_ones(())) and not torch.allclose(kept, kept.new_ones(())):
        return  # jointly normalised over the whole matrix
    assert torch.allclose(kept, torch.ones_like(kept), atol=1e-6), (what, rows)


def test_emitted_specs_compile_and_are_row_stochastic(tmp_path: Path) -> None:
    cands = list(default_space())
    paths = en.emit_specs(cands, tmp_path)
    new = [c for c in cands if c.status == "new"]
    assert len(paths) == len(new) and all(p.suffix == ".icon" for p in paths)
    for path in paths:
        module = compile(path)
        cls = module.load()
        batch = en.probe_inputs(module.ir)
        z = batch["z"]
        loss_module = _instantiate(cls, z, batch).double()
        inputs = _module_inputs(cls, batch)
        p, q = loss_module.distributions(z, **inputs)
        _assert_stochastic(p, f"{path.name} p")
        _assert_stochastic(q, f"{path.name} q")
        assert torch.isfinite(loss_module(z, **inputs)), path.name


def test_emit_writes_only_new(tmp_path: Path) -> None:
    cands = en.enumerate_methods(p_families=["augmentation"], q_families=["gaussian"])
    paths = en.emit_specs(cands, tmp_path)
    names = {p.stem for p in paths}
    assert names == {c.name for c in cands if c.status == "new"}
    text = paths[0].read_text()
    assert text.startswith("# new candidate") and check(paths[0]).ir is not None


def test_cli_emit_and_bad_usage(tmp_path: Path) -> None:
    from icon_dsl.cli import main

    assert main(["enumerate", "--p", "label", "--q", "student_t", "--emit", str(tmp_path),
                 "--format", "markdown"]) == 0  # fmt: skip
    assert (tmp_path / "label__student_t__mlp.icon").is_file()
    assert main(["enumerate", "--p", "nope"]) == 2


# -- soundness of deduplication: equal hash => equal loss ----------------------------------------

# Pairs of different texts the canonical form must identify (explicit defaults, commuted unions
# and mixtures, the default loss statement).
EQUIVALENT = [
    ("mapper = mlp(dim=8)\np = knn(x, 3)\nq = gaussian(f(x), temperature=0.5, metric=cosine)",
     "mapper = mlp(dim=8, hidden=256, depth=2)\np = knn(x, 3, metric=euclidean)\n"
     "q = gaussian(f(x), metric=cosine, temperature=0.5, diagonal=false)\nloss = kl(p, q)"),
    ("mapper = table(dim=2)\np = gaussian(x, perplexity=5)\nq = student_t(f(x))",
     "mapper = table(dim=2)\np = gaussian(x, perplexity=5)\nq = student_t(f(x), dof=1, scale=1)"),
    ("mapper = mlp(dim=8)\np = union(knn(x, 3), augmentation(index))\nq = student_t(f(x))",
     "mapper = mlp(dim=8)\np = union(augmentation(index), knn(x, 3))\nq = student_t(f(x))"),
    ("mapper = mlp(dim=8)\np = 0.3 * knn(x, 3) + 0.7 * augmentation(index)\n"
     "q = gaussian(f(x))",
     "mapper = mlp(dim=8)\np = 0.7 * augmentation(index) + 0.3 * knn(x, 3)\n"
     "q = gaussian(f(x))"),
]  # fmt: skip


def _loss(spec: str, seed: int) -> torch.Tensor:
    ir = check(spec).ir
    batch = en.probe_inputs(ir, seed=seed)
    ev = interpret(ir, batch["z"], batch["inputs"], batch["hypers"], batch["prototypes"])
    return ev.loss


@pytest.mark.parametrize("a, b", EQUIVALENT)
def test_equivalent_texts_share_a_hash_and_a_loss(a: str, b: str) -> None:
    assert check(a).ir.canonical_hash() == check(b).ir.canonical_hash()
    for seed in range(3):
        assert torch.allclose(_loss(a, seed), _loss(b, seed), rtol=1e-10, atol=1e-12)


def test_equal_hash_implies_equal_loss_across_the_space() -> None:
    """Every group of drafts with one hash, in a space with modifiers, has one loss."""
    space = en._Space(
        ps=["knn", "augmentation", "label", "uniform"], qs=["gaussian", "student_t", "cluster"],
        mappers=["mlp"], modifiers=["union", "debias"], metrics=None, divergences=["kl"],
        inputs=["x"], limits=False,
    )  # fmt: skip
    groups: dict[str, list[str]] = defaultdict(list)
    for draft in en._drafts(space):
        try:
            groups[check(draft.spec).ir.canonical_hash()].append(draft.spec)
        except SpecError:
            continue
    shared = [specs for specs in groups.values() if len(specs) > 1]
    assert shared, "the space should hold commuted unions"
    for specs in shared:
        for seed in range(2):
            losses = [_loss(s, seed) for s in specs]
            for other in losses[1:]:
                assert torch.allclose(losses[0], other, rtol=1e-10, atol=1e-12), specs


def test_different_numbers_different_hash() -> None:
    a = "mapper = mlp(dim=8)\np = knn(x, 3)\nq = gaussian(f(x), temperature=0.5)"
    b = "mapper = mlp(dim=8)\np = knn(x, 3)\nq = gaussian(f(x), temperature=0.2)"
    assert check(a).ir.canonical_hash() != check(b).ir.canonical_hash()


# -- evaluation (with a fake runtime) ------------------------------------------------------------


class _Result:
    def __init__(self, metrics: dict[str, float]) -> None:
        self.metrics = metrics
        self.embedding = None
        self.losses: list[float] = []
        self.out_dir = None


def test_evaluate_writes_leaderboard_and_resumes(tmp_path: Path) -> None:
    calls: list[str] = []

    def fake_train(spec: str, **kwargs: object) -> _Result:
        name = spec.splitlines()[0].split()[1]
        calls.append(name)
        if "student_t" in name and "table" in name:
            raise RuntimeError("boom")
        return _Result({"knn_accuracy": 0.5 + 0.01 * len(name), "linear_probe_accuracy": 0.4,
                        "cluster_accuracy": 0.3, "nmi": 0.2, "trustworthiness": 0.9})  # fmt: skip

    cands = en.enumerate_methods(p_families=["label"], q_families=["student_t"],
                                 divergences=["kl"], limits=False)  # fmt: skip
    logs: list[str] = []
    rows = en.evaluate(cands, None, out=tmp_path, epochs=1, train=fake_train, log=logs.append)
    new = [c.name for c in cands if c.status == "new"]
    assert set(new) <= set(calls)
    supcon = by_key("supcon")
    assert supcon is not None and supcon.display in {r["known_as"] for r in rows}  # a baseline
    assert any(r["error"] for r in rows)
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert [r["name"] for r in board] == [r["name"] for r in rows]
    md = (tmp_path / "leaderboard.md").read_text()
    assert "same label" in md and "**new**" in md and "known: SupCon" in md
    assert any("training" in line for line in logs)
    # a second run resumes: only the failure is tried again
    calls.clear()
    again = en.evaluate(cands, None, out=tmp_path, epochs=1, train=fake_train, log=logs.append)
    assert calls == [r["name"] for r in rows if r["error"]]
    assert [r["name"] for r in again] == [r["name"] for r in rows]
    calls.clear()
    # an interrupted run: drop one score, only that one is retrained
    scores = json.loads((tmp_path / en.SCORES_FILE).read_text())
    dropped = sorted(scores)[0]
    del scores[dropped]
    (tmp_path / en.SCORES_FILE).write_text(json.dumps(scores))
    en.evaluate(cands, None, out=tmp_path, epochs=1, train=fake_train)
    failed = [r["name"] for r in rows if r["error"]]
    assert sorted(calls) == sorted({dropped, *failed})
