"""`compile --normaliser exact`: forward a block of rows at a time, the same numbers as dense.

For neighbour specs (a fixed p against a kernel of f(x), normalised per row) the row-block module
and the default dense module give the same loss and the same gradient in float64, with block
sizes that do and do not divide the batch, kept and dropped rows, and every kind of p (log
probabilities, probabilities, an indicator, a graph). Specs whose rows need the whole batch are
refused before any code is written.
"""

from __future__ import annotations

from pathlib import Path

import contract_batch as B
import pytest
import torch

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
}


def _loss_and_grad(cls: type, z: torch.Tensor, inputs: dict, graph: dict, **options):
    module = cls(**graph, **options)
    z = z.detach().clone().requires_grad_(True)
    loss = module(z, **inputs)
    loss.backward()
    return float(loss.detach()), z.grad, module.last_dropped_rows


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("block_size", [7, 40, 1024])
def test_blocks_give_the_dense_loss_and_gradient(name: str, block_size: int) -> None:
    dense = icon_dsl.compile(SPECS[name]).load()
    blocks = icon_dsl.compile(SPECS[name], normaliser="exact").load()
    n = 40
    inputs, graph, mapper, mapper_input = B.forward_batch(dense, n, labels=4)
    if "y" in inputs:  # one label seen once: its row of p is empty and dropped
        inputs["y"] = inputs["y"].clone()
        inputs["y"][3] = 99
    inputs = {k: v.double() if v.is_floating_point() else v for k, v in inputs.items()}
    graph = {k: v.double() for k, v in graph.items()}
    z = mapper(mapper_input).detach().double() * 5  # spread out: q far from uniform
    loss, grad, dropped = _loss_and_grad(dense, z, inputs, graph)
    block_loss, block_grad, block_dropped = _loss_and_grad(
        blocks, z, inputs, graph, block_size=block_size
    )
    assert block_loss == pytest.approx(loss, rel=1e-12, abs=0)
    assert torch.allclose(block_grad, grad, rtol=1e-10, atol=1e-14)
    assert grad.abs().max() > 1e-6  # the gradient compared is not zero
    assert block_dropped == dropped == (1 if name == "label" else 0)


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
    "path, node",
    [("tsne_joint.icon", "joint("), ("simclr.icon", "q = "), ("kmeans.icon", "q = ")],
)
def test_specs_whose_rows_need_the_batch_are_refused(path: str, node: str) -> None:
    with pytest.raises(SpecError) as err:
        icon_dsl.compile(ROOT / "specs" / path, normaliser="exact")
    assert err.value.codes == ["normaliser"]
    assert node in str(err.value)


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
