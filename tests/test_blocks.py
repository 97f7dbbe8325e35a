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
    # the search's line would not fit: its betas get a line of their own
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
        if name == "long_name":  # the dense _p_terms's search line is too long (open, below)
            block = source[source.index("    def _block_rows(") :]
            assert "        beta0 = _calibrated(\n            betas,\n" in block
            assert "        p_logits = -p_d2 * beta0\n" in block
            continue
        (tmp_path / f"{name}.py").write_text(source)
    shutil.copy(ROOT / "generated" / "ruff.toml", tmp_path / "ruff.toml")
    for command in (["format", "--check"], ["check"]):
        run = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--no-cache", "."],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stdout + run.stderr


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
    with pytest.raises(ValueError, match="normaliser must be one of dense, exact, got 'fast'"):
        icon_dsl.compile(SPECS["tsne"], normaliser="fast")


def test_the_command_line_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = ROOT / "specs" / "tsne.icon"
    assert main(["compile", "--normaliser", "exact", str(spec), "-o", str(tmp_path)]) == 0
    written = (tmp_path / "tsne.py").read_text(encoding="utf-8")
    assert written == icon_dsl.compile(spec, normaliser="exact").source
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
