"""The whole-data paths: what a generated module's docstring says `icon-dsl train` does at scale
is what the training plan does, for every bundled spec."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import SPECS

from icon_dsl import large_data
from icon_dsl.api import compile as compile_spec
from icon_dsl.train.data import Dataset
from icon_dsl.train.errors import DataError, TrainError, TrainNote
from icon_dsl.train.plan import make_plan

ROWS = 10_000  # above FULL_BATCH_LIMIT and EXACT_LIMIT: the sampled estimates


def _large_plan(spec: Path):  # type: ignore[no-untyped-def]
    """The plan on ROWS rows of random data with every input a spec may read, or None when the
    spec needs inputs these data do not have (labels with a number of classes, a graph)."""
    module = compile_spec(spec)
    rng = np.random.default_rng(0)
    data = Dataset(
        name="random",
        x=rng.random((ROWS, 8), dtype=np.float32),
        y=rng.integers(0, 10, ROWS),
        side=rng.random((ROWS, 4), dtype=np.float32),
    )
    try:
        return module, make_plan(module, module.load(), data)
    except (DataError, TrainError):
        return module, None


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_the_docstring_says_what_train_does(spec: Path) -> None:
    module, plan = _large_plan(spec)
    note = large_data.docstring_note(module.ir, "_NeighbourCrossEntropy" in module.source)
    in_module = "Large data:" in module.source
    assert in_module == bool(note)
    if plan is None:
        assert not note
        return
    if plan.sparse:
        text = " ".join(note)
        assert "nearest neighbours" in text and f"({plan.normaliser}:" in text
        if plan.normaliser == "sampled":
            assert plan.negatives == large_data.NEIGHBOUR_NEGATIVES
    elif plan.cluster:
        assert "low rank" in " ".join(note) and plan.normaliser == "sampled"
        assert plan.negatives == large_data.CLUSTER_NEGATIVES
    else:
        assert not note, f"{spec.stem}: the docstring promises a whole-data path train lacks"


def test_the_bundled_large_data_specs() -> None:
    """The specs the issue names take the whole-data paths (and one that cannot, does not)."""
    paths = {}
    for stem in ("tsne", "tsne_joint", "sne", "kmeans", "debiased_infonce_clustering", "simclr"):
        _, plan = _large_plan(SPECS[0].parent / f"{stem}.icon")
        paths[stem] = (
            None
            if plan is None
            else ("sparse" if plan.sparse else "cluster" if plan.cluster else "dense")
        )
    assert paths == {
        "tsne": "sparse",
        "tsne_joint": "sparse",
        "sne": "sparse",
        "kmeans": "cluster",
        "debiased_infonce_clustering": "cluster",
        "simclr": "dense",
    }


def test_a_joint_q_with_a_sampled_normaliser_gets_a_note() -> None:
    """Sampling the single normaliser of a joint q gave much worse embeddings (3,000 digits:
    10-NN 0.839 against 0.946 exact), so train says so; the per-row form samples well, and
    2-D embeddings interpolate by default."""
    module = compile_spec(SPECS[0].parent / "tsne_joint.icon")
    data = Dataset(name="random", x=np.zeros((ROWS, 8), dtype=np.float32), y=None)
    with pytest.warns(TrainNote, match="joint"):
        plan = make_plan(module, module.load(), data, normaliser="sampled")
    assert plan.normaliser == "sampled"
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainNote)
        _, plan = _large_plan(SPECS[0].parent / "tsne_joint.icon")
        assert plan is not None and plan.normaliser == "interpolated"
        module = compile_spec(SPECS[0].parent / "tsne.icon")
        plan = make_plan(module, module.load(), data, normaliser="sampled")
    assert plan.normaliser == "sampled"


def test_explain_reports_the_clustering_path_and_its_choice() -> None:
    from icon_dsl.explain import explain

    large = explain(SPECS[0].parent / "kmeans.icon", batch=70_000)
    assert "icon-dsl train on 70000 rows (clustering head" in large
    assert "sampled (32 columns per row, unbiased)" in large
    assert "train picks: sampled (N > 8192)" in large
    seconds = {
        line.split("(")[0].strip(): float(line.split(": ")[1].split(" s per epoch")[0])
        for line in large.splitlines()
        if " s per epoch and start" in line
    }
    assert seconds["exact"] > 10 * seconds["sampled"] > 0  # N^2 pairs against N m
    # the total counts the starts as halving runs them: 10 x 10 + 5 x 20 + 3 x 70 epochs
    total = next(line for line in large.splitlines() if line.strip().startswith("sampled ("))
    minutes = float(total.split("100 epochs x 10 starts, halved: ")[1].split(" min")[0])
    assert minutes == pytest.approx(seconds["sampled"] * 410 / 60, abs=0.051)
    medium = explain(SPECS[0].parent / "kmeans.icon", batch=5_000)
    assert "train picks: exact (N <= 8192)" in medium
