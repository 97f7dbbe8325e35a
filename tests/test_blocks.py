"""`compile --normaliser exact`: forward a block of rows at a time, the same numbers as dense.

For neighbour specs (a fixed p against a kernel of f(x), normalised per row) the row-block module
and the default dense module give the same loss and the same gradient in float64, with block
sizes that do and do not divide the batch, kept and dropped rows, and every kind of p (log
probabilities, probabilities, an indicator, a graph). Specs whose rows need the whole batch are
refused before any code is written.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import shutil
import subprocess
import sys
from pathlib import Path

import contract_batch as B
import pytest
import torch
import whole_table as W

import icon_dsl
from icon_dsl import SpecError
from icon_dsl.cli import main
from icon_dsl.explain import explain

ROOT = Path(__file__).resolve().parents[1]
_Q = "q = student_t(f(x))\nmapper = table(dim=2)\n"
SPECS = {
    "tsne": (ROOT / "specs" / "tsne.icon").read_text(encoding="utf-8"),
    "sne": (ROOT / "specs" / "sne.icon").read_text(encoding="utf-8"),
    "knn": "p = knn(x, k=5)\n" + _Q,
    "label": "p = label(y)\n" + _Q,
    "debias": "p = debias(gaussian(x, perplexity=5), alpha=0.1)\n" + _Q,
    "graph": "p = graph(index)\n" + _Q,
    "sigma": "param s = 0.7\np = gaussian(x, sigma=s)\nq = gaussian(f(x), sigma=1.5)\n"
    + "mapper = table(dim=3)\n",
    # a graph buffer: no p cache, the searches are kept for one call
    "mixture": "p = 0.5 * graph(index) + 0.5 * gaussian(x, perplexity=5)\n" + _Q,
    # the block's search would not fit on its line: its betas get a line of their own
    "mid_name": "param perplexity_of_the_p = 5\np = gaussian(x, perplexity=perplexity_of_the_p)\n"
    + _Q,
    # the search's line would not fit: the perplexity is named on a line of its own
    "long_name": "param a_rather_long_name_for_the_perplexity_of_p = 5\n"
    + "p = gaussian(x, perplexity=a_rather_long_name_for_the_perplexity_of_p)\n"
    + _Q,
}


def _loss_and_grad(cls: type, z: torch.Tensor, inputs: dict, graph: dict, **options):
    required = {  # hyperparameters without a default (card's sigma): 1.0
        name: 1.0
        for name, param in inspect.signature(cls).parameters.items()
        if param.default is inspect.Parameter.empty and name not in graph
    }
    module = cls(**graph, **required, **options)
    z = z.detach().clone().requires_grad_(True)
    loss = module(z, **inputs)
    loss.backward()
    return float(loss.detach()), z.grad, module.last_dropped_rows


def _blockable(path: Path) -> bool:
    try:
        icon_dsl.compile(path, normaliser="exact")
    except SpecError:
        return False
    return True


# every bundled spec that takes row blocks: neighbour specs, clustering heads and the other
# N x N specs (the contrastive family has blocks of its own, N x n specs need none)
BUNDLED = [p for p in sorted((ROOT / "specs").glob("*.icon")) if _blockable(p)]
CASES = {**SPECS, **{f"specs/{p.stem}": p.read_text(encoding="utf-8") for p in BUNDLED}}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("block_size", [7, 40, 1024])
def test_blocks_give_the_dense_loss_and_gradient(name: str, block_size: int) -> None:
    dense = icon_dsl.compile(CASES[name]).load()
    blocks = icon_dsl.compile(CASES[name], normaliser="exact").load()
    n = 40
    inputs, graph, mapper, mapper_input = B.forward_batch(dense, n, labels=4)
    if "y" in inputs:  # one label seen once: its row of p is empty and dropped
        inputs["y"] = inputs["y"].clone()
        inputs["y"][3] = 99
    inputs = {k: v.double() if v.is_floating_point() else v for k, v in inputs.items()}
    graph = {k: v.double() for k, v in graph.items()}
    if mapper_input.is_floating_point():
        mapper_input = mapper_input.double()
    z = mapper.double()(mapper_input).detach()  # a softmax's rows sum to 1 in float64
    if dense.MAPPER_INPUT == "index":
        z = z * 5  # a table's small start spread out: q far from uniform
    loss, grad, dropped = _loss_and_grad(dense, z, inputs, graph)
    block_loss, block_grad, block_dropped = _loss_and_grad(
        blocks, z, inputs, graph, block_size=block_size
    )
    assert block_loss == pytest.approx(loss, rel=1e-12, abs=0)
    assert torch.allclose(block_grad, grad, rtol=1e-10, atol=1e-14)
    assert grad.abs().max() > 1e-6  # the gradient compared is not zero
    assert block_dropped == dropped
    assert dropped == (1 if name == "label" else 0) or name.startswith("specs/")


def test_the_bundled_specs_that_take_blocks() -> None:
    taken = {p.stem for p in BUNDLED}
    assert {"tsne", "sne", "kmeans", "spectral", "pca", "normalized_cuts"} <= taken
    assert not taken & {"tsne_joint", "simclr", "supcon", "cross_entropy", "mlm"}


def test_block_modules_are_formatted_and_lint_clean(tmp_path: Path) -> None:
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install ruff)")
    for name, text in SPECS.items():
        source = icon_dsl.compile(text, normaliser="exact").source
        (tmp_path / f"{name}.py").write_text(source)
        try:
            sampled = icon_dsl.compile(text, normaliser="sampled").source
        except SpecError:
            continue
        (tmp_path / f"{name}_sampled.py").write_text(sampled)
    assert {"tsne_sampled.py", "sne_sampled.py", "knn_sampled.py"} <= {
        p.name for p in tmp_path.iterdir()
    }
    shutil.copy(ROOT / "generated" / "ruff.toml", tmp_path / "ruff.toml")
    for command in (["format", "--check"], ["check"]):
        run = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--no-cache", "."],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stdout + run.stderr


def test_long_lines_of_a_search_are_split() -> None:
    mid = icon_dsl.compile(SPECS["mid_name"], normaliser="exact").source
    assert (
        "        beta0 = _calibrated(betas, 0, offset, p_d2, self.perplexity_of_the_p, diag)\n"
        in mid
    )
    assert "        p_logits = -p_d2 * beta0\n" in mid
    long = icon_dsl.compile(SPECS["long_name"]).source
    assert "            p_perplexity = self.a_rather_long_name_for_the_perplexity_of_p\n" in long
    assert "p_logits = -p_d2 * _perplexity_beta(p_d2, p_perplexity, diag)\n" in long


def test_the_block_module_says_what_it_does() -> None:
    source = icon_dsl.compile(SPECS["tsne"], normaliser="exact").source
    assert "block_size: int = 1024" in source
    assert "memory N x block_size" in source
    assert "checkpoint(" in source
    # the dense module has neither
    assert "checkpoint(" not in icon_dsl.compile(SPECS["tsne"]).source


@pytest.mark.parametrize("bad", [0, -3, 2.5, float("nan")])
def test_a_bad_block_size_is_named(bad: float) -> None:
    cls = icon_dsl.compile(SPECS["tsne"], normaliser="exact").load()
    with pytest.raises(ValueError, match="block_size must satisfy block_size >= 1"):
        cls(block_size=bad)


@pytest.mark.parametrize(
    "path, node, why",
    [
        ("tsne_joint.icon", "joint(", "joint(...) reads every row of the batch"),
        ("simclr.icon", "q = ", "the contrastive family's modules have row blocks"),
        ("cross_entropy.icon", "p = ", "p is N x n, not N x N"),
    ],
)
def test_specs_whose_rows_need_the_batch_are_refused(path: str, node: str, why: str) -> None:
    with pytest.raises(SpecError) as err:
        icon_dsl.compile(ROOT / "specs" / path, normaliser="exact")
    assert err.value.codes == ["normaliser"]
    assert node in str(err.value) and why in str(err.value)


def test_an_unknown_normaliser_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="must be one of dense, exact, sampled, got 'fast'"):
        icon_dsl.compile(SPECS["tsne"], normaliser="fast")


def test_the_command_line_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = ROOT / "specs" / "tsne.icon"
    assert main(["compile", "--normaliser", "exact", str(spec), "-o", str(tmp_path)]) == 0
    written = (tmp_path / "tsne.py").read_text(encoding="utf-8")
    assert written == icon_dsl.compile(spec, normaliser="exact").source
    assert main(["compile", "--normaliser", "sampled", str(spec), "-o", str(tmp_path)]) == 0
    written = (tmp_path / "tsne.py").read_text(encoding="utf-8")
    assert written == icon_dsl.compile(spec, normaliser="sampled").source
    joint = ROOT / "specs" / "tsne_joint.icon"
    assert main(["compile", "--normaliser", "exact", str(joint), "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "[normaliser]" in err and "Traceback" not in err
    assert not (tmp_path / "tsne_joint.py").exists()


def _counting_searches(cls: type, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows of every perplexity search the module runs from now on."""
    calls: list[int] = []
    module_globals = cls.forward.__globals__  # type: ignore[attr-defined]
    search = module_globals["_perplexity_beta"]

    def counted(d2, *args):  # type: ignore[no-untyped-def]
        calls.append(d2.shape[0])
        return search(d2, *args)

    monkeypatch.setitem(module_globals, "_perplexity_beta", counted)
    return calls


def test_each_block_searches_its_perplexity_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not again in the backward's recomputation, nor in later calls on the same inputs; new
    inputs (or cache_p=False) search again, and never give a stale p."""
    blocks = icon_dsl.compile(SPECS["tsne"], normaliser="exact").load()
    dense = icon_dsl.compile(SPECS["tsne"]).load()
    inputs, _, mapper, mapper_input = B.forward_batch(dense, 100, labels=4)
    x = inputs["x"].double()
    z = mapper(mapper_input).detach().double() * 5
    calls = _counting_searches(blocks, monkeypatch)
    module = blocks(block_size=32)
    for _ in range(2):
        zz = z.clone().requires_grad_(True)
        module(zz, x=x).backward()
    assert calls == [32, 32, 32, 4]  # 100 rows in blocks of 32, searched in the first call only
    calls.clear()
    moved = x + 0.5 * torch.randn_like(x)
    zz = z.clone().requires_grad_(True)
    loss = module(zz, x=moved)
    loss.backward()
    assert calls == [32, 32, 32, 4]
    reference, grad, _ = _loss_and_grad(dense, z, {"x": moved}, {})
    assert float(loss.detach()) == pytest.approx(reference, rel=1e-12, abs=0)
    assert torch.allclose(zz.grad, grad, rtol=1e-10, atol=1e-14)
    calls.clear()
    fresh = blocks(block_size=32, cache_p=False)
    for _ in range(2):
        zz = z.clone().requires_grad_(True)
        fresh(zz, x=x).backward()
    assert calls == [32, 32, 32, 4] * 2  # once a call: the backward still reuses them


@pytest.mark.slow
def test_the_whole_table_in_blocks_equals_dense() -> None:
    """Every distinct loss of the enumerated table (with debias) that takes blocks: loss and
    gradient in float64 on 24 rows in blocks of 7, against the dense module."""
    taken = 0
    for _, table_spec in W.specs():
        spec = table_spec.replace("perplexity=30", "perplexity=5")  # a batch of 24
        try:
            blocks = icon_dsl.compile(spec, normaliser="exact").load()
        except SpecError:
            continue
        taken += 1
        results: list[tuple[float, torch.Tensor]] = []
        for cls, options in ((W.load(spec), {}), (blocks, {"block_size": 7})):
            g = torch.Generator().manual_seed(0)
            inputs, graph = W.batch(cls, 24, g)
            module = cls(**graph, **options)
            z = W.embedding(spec, module, 24, g).requires_grad_(True)
            loss = module(z, **inputs)
            loss.backward()
            assert z.grad is not None
            results.append((float(loss.detach()), z.grad))
        (loss, grad), (block_loss, block_grad) = results
        assert block_loss == pytest.approx(loss, rel=1e-11, abs=1e-13), spec
        assert torch.allclose(block_grad, grad, rtol=1e-9, atol=1e-12), spec
    assert taken >= 700  # of 778 (2026-12-01: 702; the rest need the whole batch or are N x n)


# -- --normaliser sampled ----------------------------------------------------------------------


def _sampled_setup(n: int = 200, **options):
    dense = icon_dsl.compile(SPECS["tsne"]).load()
    sampled = icon_dsl.compile(SPECS["tsne"], normaliser="sampled").load()
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 8, generator=g, dtype=torch.float64) * 3
    x = centres[torch.arange(n) % 5] + torch.randn(n, 8, generator=g, dtype=torch.float64)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64) * 3
    return dense, sampled(**options), x, z


def test_sampled_keeps_the_largest_entries_of_p() -> None:
    dense, module, x, z = _sampled_setup(block_size=37)
    p_dense, _ = dense().distributions(z, x=x)
    columns, values = module._sparse_p((x,), 0, z, z, x, x)
    assert columns.shape == values.shape == (200, 90)  # 3 x perplexity 30
    top = p_dense.topk(90, dim=1)
    assert torch.equal(columns, top.indices)
    kept = top.values.sum(1)
    assert float(kept.min()) > 0.99  # the mass beyond 90 neighbours, dropped
    assert torch.allclose(values, top.values / kept[:, None], rtol=1e-12, atol=0)
    # every column kept: p itself
    every = icon_dsl.compile(SPECS["tsne"], normaliser="sampled").load()(neighbours=199)
    columns, values = every._sparse_p((x,), 0, z, z, x, x)
    rebuilt = torch.zeros_like(p_dense).scatter_(1, columns, values)
    assert torch.allclose(rebuilt, p_dense, rtol=1e-12, atol=1e-300)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_the_sampled_gradient_approaches_the_exact_one_as_m_grows() -> None:
    """With every column of p kept, the exact loss is the dense module's; the sampled one's
    gradient turns towards it as the negatives per row grow (mean cosine over 5 draws)."""
    dense, _, x, z = _sampled_setup()
    _, exact_grad, _ = _loss_and_grad(dense, z, {"x": x}, {})
    sampled = icon_dsl.compile(SPECS["tsne"], normaliser="sampled").load()
    exact_loss = _loss_and_grad(dense, z, {"x": x}, {})[0]
    cosines, losses = {}, {}
    for m in (2, 16, 128, 1024, 8192):
        module = sampled(neighbours=199, negatives=m)
        runs = []
        for seed in range(5):
            torch.manual_seed(seed)
            zz = z.clone().requires_grad_(True)
            loss = module(zz, x=x)
            loss.backward()
            assert zz.grad is not None
            runs.append(_cosine(zz.grad, exact_grad))
        cosines[m], losses[m] = sum(runs) / len(runs), float(loss.detach())
    # measured 2026-12-01: 0.24, 0.45, 0.82, 0.97, 0.996 (3 draws each)
    assert cosines[2] < cosines[16] < cosines[128] < cosines[1024] < cosines[8192]
    assert cosines[8192] > 0.99 and cosines[2] < 0.5
    assert losses[8192] == pytest.approx(exact_loss, rel=1e-3)


def test_the_sampled_normaliser_is_unbiased_for_z() -> None:
    """(M - 1) / m times the kernel summed over m uniform draws averages to Z_i."""
    _, module, x, z = _sampled_setup(negatives=8)
    log_w = module._q_kernel(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))[0]
    log_w.fill_diagonal_(-math.inf)
    exact = log_w.exp().sum(1)
    draws = []
    for seed in range(400):
        torch.manual_seed(seed)
        drawn = module.forward.__globals__["_uniform_columns"](200, 200, 8, 0, z.device)
        assert not (drawn == torch.arange(200)[:, None]).any()  # never the row itself
        picked = module._q_kernel(((z[:, None, :] - z[drawn]) ** 2).sum(-1))[0].exp()
        draws.append(picked.sum(1) * (199 / 8))
    mean = torch.stack(draws).mean(0)
    assert float((mean / exact - 1).abs().median()) < 0.05


def test_sampled_builds_p_once_per_input(monkeypatch: pytest.MonkeyPatch) -> None:
    dense, module, x, z = _sampled_setup(block_size=64)
    sampled = type(module)
    calls = _counting_searches(sampled, monkeypatch)
    for _ in range(2):
        zz = z.clone().requires_grad_(True)
        module(zz, x=x).backward()
    assert calls == [64, 64, 64, 8]  # 200 rows in blocks of 64, the first call only
    calls.clear()
    module.neighbours = 20  # another k: p is kept anew
    module(z, x=x)
    assert calls == [64, 64, 64, 8]
    calls.clear()
    module(z, x=x + 1.0)  # new inputs
    assert calls == [64, 64, 64, 8]


@pytest.mark.parametrize(
    "spec, why",
    [
        (ROOT / "specs" / "kmeans.icon", "a sampled normaliser serves a fixed p against a kernel"),
        ("p = gaussian(x, sigma=1)\n" + _Q, "a fixed-width gaussian p has no k nearest"),
        ("p = label(y)\n" + _Q, "p uses label"),
    ],
)
def test_sampled_is_refused_without_neighbours_to_keep(spec: object, why: str) -> None:
    with pytest.raises(SpecError) as err:
        icon_dsl.compile(spec, normaliser="sampled")  # type: ignore[arg-type]
    assert err.value.codes == ["normaliser"] and why in str(err.value)


@pytest.mark.parametrize("option, bad", [("negatives", 0), ("neighbours", 0), ("negatives", 1.5)])
def test_bad_sampled_options_are_named(option: str, bad: float) -> None:
    cls = icon_dsl.compile(SPECS["tsne"], normaliser="sampled").load()
    with pytest.raises(ValueError, match=f"{option} must satisfy {option} >= 1"):
        cls(**{option: bad})


@pytest.mark.parametrize("normaliser", ["exact", "sampled"])
def test_torch_compile_of_the_block_and_sampled_forwards(normaliser: str) -> None:
    """torch.compile (aot_eager) runs them, the kept searches and the sparse p between graphs,
    with eager's loss and gradient (the same draws for sampled: one seed)."""
    cls = icon_dsl.compile(SPECS["tsne"], normaliser=normaliser).load()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g, dtype=torch.float64)
    z = torch.randn(64, 2, generator=g, dtype=torch.float64)
    results = []
    for module in (cls(block_size=16), torch.compile(cls(block_size=16), backend="aot_eager")):
        for _ in range(2):  # the second call reads the kept searches or the kept p
            torch.manual_seed(0)
            zz = z.clone().requires_grad_(True)
            loss = module(zz, x=x)
            loss.backward()
            assert zz.grad is not None
            results.append((float(loss.detach()), zz.grad))
    (loss, grad), *others = results
    for other_loss, other_grad in others:
        assert other_loss == pytest.approx(loss, rel=1e-12, abs=0)
        assert torch.allclose(other_grad, grad, rtol=1e-10, atol=1e-14)


def test_explain_says_where_block_mode_comes_from() -> None:
    tsne = explain(ROOT / "specs" / "tsne.icon", batch=2000)
    # 15 float32 matrices of 1,024 x 2,000 (memory.BLOCK_MATRICES), against 15 of 2,000^2 dense
    assert "block mode (block_size=1024, icon-dsl compile --normaliser exact): 0.11 GiB" in tsne
    assert "dense: 0.22 GiB" in tsne
    joint = explain(ROOT / "specs" / "tsne_joint.icon", batch=1000)
    why = "joint(...) reads every row of the batch to give one row"
    assert f"block mode: not available for this spec: {why}" in joint
