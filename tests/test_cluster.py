"""The whole-data clustering path (icon_dsl/train/cluster.py, cluster_pairs.py) against dense
references.

Small N in float64: the exact row blocks against the generated module's dense loss and gradient
and the interpreter's loss, for kmeans.icon (reverse KL against a gaussian p, through q's low
rank) and debiased_infonce_clustering.icon (on two views of every sample: the other view, kNN
and walk p, debiased on both sides); the sampled estimate's mean against the exact value, and its
gradient's direction approaching the exact one as the number of columns grows; the plan's
choice of the path; and short runs through ``train``. The large runs live in
benchmarks/scale.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_run import run_cli

from icon_dsl import large_data
from icon_dsl.api import compile as compile_spec
from icon_dsl.interpret import interpret
from icon_dsl.train import cluster, cluster_pairs, sparse_p
from icon_dsl.train.augment import make_views
from icon_dsl.train.data import Dataset
from icon_dsl.train.errors import TrainError
from icon_dsl.train.plan import make_plan
from icon_dsl.train.runtime import train

SPECS = Path(__file__).resolve().parent.parent / "specs"


def blobs(n: int, dim: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(0, 4, (4, dim))[y] + rng.normal(0, 1, (n, dim))
    return x, y


def assignments(n: int, seed: int = 0, sharp: float = 1.0) -> torch.Tensor:
    logits = torch.randn(n, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return torch.softmax(logits * sharp, 1).requires_grad_()


Case = tuple[Any, Any, dict[str, torch.Tensor], dict[str, float]]


def kmeans_case(sigma: float = 2.0) -> Case:
    module = compile_spec(SPECS / "kmeans.icon")
    x, _ = blobs(300)
    return module, module.load()(sigma=sigma), {"x": torch.from_numpy(x)}, {"sigma": sigma}


def debiased_case() -> Case:
    module = compile_spec(SPECS / "debiased_infonce_clustering.icon")
    x, _ = blobs(150)
    views, index = make_views(torch.from_numpy(x), 2, torch.Generator().manual_seed(1), None)
    return module, module.load()(), {"x": views, "index": index}, {"alpha": 0.2}


CASES: dict[str, Callable[[], Case]] = {
    "kmeans": kmeans_case,
    "debiased_infonce_clustering": debiased_case,
}


@pytest.mark.parametrize("spec", sorted(CASES))
def test_exact_row_blocks_equal_the_dense_loss_and_gradient(spec: str) -> None:
    module, loss, inputs, hypers = CASES[spec]()
    v = assignments(300)
    dense = loss(v, **inputs)
    (dense_grad,) = torch.autograd.grad(dense, v)
    objective = cluster.ClusterObjective(module.ir, hypers, "exact", block=64)  # 5 blocks
    objective.prepare(inputs)
    value = objective.loss(v)
    (grad,) = torch.autograd.grad(value, v)
    assert torch.allclose(value, dense, rtol=1e-12)
    assert torch.allclose(grad, dense_grad, rtol=1e-9, atol=1e-15)
    oracle = interpret(module.ir, v.detach(), inputs, hypers)  # the interpreter agrees too
    assert torch.allclose(value.detach(), oracle.loss, rtol=1e-10)


def test_sparse_p_with_union_and_augmentation_matches_the_interpreter() -> None:
    module, _, inputs, _ = debiased_case()
    ir = module.ir
    inner = ir.children(ir.roots["p"])[0]  # union(augmentation, knn, walk) inside the debias
    built = sparse_p.build_p(ir, {}, inputs["x"].numpy(), inner, inputs["index"])
    run = interpret(ir, torch.zeros(300, 10, dtype=torch.float64), inputs, {"alpha": 0.0})
    assert bool(run.valid.all())  # every row has its other view
    assert torch.allclose(built.dense(), run.p, atol=1e-12)  # alpha 0: p is the union itself


def test_an_augmentation_without_other_views_leaves_no_row() -> None:
    module, _, inputs, _ = debiased_case()
    objective = cluster.ClusterObjective(module.ir, {}, "exact")
    alone = {"x": inputs["x"][:150], "index": inputs["index"][:150]}  # one view per sample
    with pytest.raises(ValueError, match="no row of p has another view"):
        objective.prepare(alone)


def test_sampled_estimate_is_unbiased() -> None:
    for make in CASES.values():
        module, _, inputs, hypers = make()
        v = assignments(300)
        exact = cluster.ClusterObjective(module.ir, hypers, "exact")
        exact.prepare(inputs)
        target = float(exact.loss(v).detach())
        sampled = cluster.ClusterObjective(module.ir, hypers, "sampled", negatives=4)
        sampled.prepare(inputs)
        draws = [
            float(sampled.loss(v, torch.Generator().manual_seed(s)).detach()) for s in range(300)
        ]
        if module.ir.op(module.ir.roots["loss"]) == "reverse_kl":  # sampled leaves out log Z
            log_z = cluster._log_z(torch.from_numpy(blobs(300)[0]), 1 / (2 * 2.0**2))
            target -= float(log_z.mean())
        error = np.std(draws) / np.sqrt(len(draws))
        assert abs(np.mean(draws) - target) < 4 * error, (np.mean(draws), target, error)
        assert np.std(draws) > 0  # it is an estimate


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


@pytest.mark.parametrize("spec", sorted(CASES))
def test_sampled_gradient_direction_approaches_the_exact_one(spec: str) -> None:
    module, _, inputs, hypers = CASES[spec]()
    if spec == "kmeans":  # a wide p: the entropy term carries much of the gradient
        module, _, inputs, hypers = kmeans_case(sigma=30.0)
    v = assignments(300, sharp=3.0)

    def gradient(normaliser: str, m: int, seed: int) -> torch.Tensor:
        objective = cluster.ClusterObjective(module.ir, hypers, normaliser, negatives=m)
        objective.prepare(inputs)
        (grad,) = torch.autograd.grad(objective.loss(v, torch.Generator().manual_seed(seed)), v)
        return grad - grad.mean(1, keepdim=True)  # off the simplex's normal (softmax drops it)

    exact = gradient("exact", 1, 0)
    cosines = [
        float(np.mean([_cosine(gradient("sampled", m, seed), exact) for seed in range(3)]))
        for m in (2, 16, 128, 1024, 8192)  # with replacement: m may exceed N
    ]
    assert cosines == sorted(cosines), cosines
    assert cosines[0] < 0.95 and cosines[-1] > 0.99, cosines


def test_pair_sums_on_a_list_equal_autograd_of_the_dense_sum() -> None:
    v = assignments(40)
    rows = torch.randint(0, 40, (300,), generator=torch.Generator().manual_seed(0))
    cols = torch.randint(0, 40, (300,), generator=torch.Generator().manual_seed(1))
    weight = torch.rand(300, dtype=torch.float64)
    value, gradient = cluster_pairs.on_pairs(
        v.detach(), rows, cols, weight, cluster_pairs.log_terms, 0.8, 0.01
    )
    mass = v.sum(0)
    q = (v / mass) @ v.T
    reference = (weight * torch.log(0.8 * q[rows, cols] + 0.01)).sum()
    (expected,) = torch.autograd.grad(reference, v)
    assert torch.allclose(value, reference.detach(), rtol=1e-12)
    assert torch.allclose(gradient, expected, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize(
    ("fn", "f", "a", "b", "diagonal"),
    [
        (cluster_pairs.entropy_terms, lambda s: s * torch.log(s), 1.0, 0.0, True),
        (cluster_pairs.log_terms, torch.log, 0.9, 0.01, False),
    ],
)
def test_sampled_sums_equal_autograd_of_their_draws(
    monkeypatch: pytest.MonkeyPatch,
    fn: cluster_pairs.Fn,
    f: Callable[[torch.Tensor], torch.Tensor],
    a: float,
    b: float,
    diagonal: bool,
) -> None:
    """The value and the documented gradient estimate for the drawn columns, against autograd
    of the same sums written densely: 38 groups of 8 rows in passes of 5 groups (a part pass)."""
    monkeypatch.setattr(cluster_pairs, "CHUNK_GROUPS", 5)
    n, m, group = 300, 6, 8
    v = assignments(n, sharp=2.0)
    weight = torch.rand(n, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    value = cluster_pairs.sampled(
        v, weight, fn, m, torch.Generator().manual_seed(3), a, b, diagonal, group
    )
    (estimate,) = torch.autograd.grad(value, v)
    groups = -(-n // group)
    cols = torch.randint(0, n, (groups, m), generator=torch.Generator().manual_seed(3))
    cols = cols.repeat_interleave(group, 0)[:n]  # row i's m columns
    rows = torch.arange(n)[:, None].expand(n, m)
    u = v.detach().clone().requires_grad_()
    fixed = v.detach()

    def terms(left: torch.Tensor, right: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
        q = (left[rows] * right[cols] / mass).sum(2)
        out = f(a * q + b)
        return out if diagonal else torch.where(rows == cols, 0.0, out)

    scale = n / m
    as_row = scale * (weight[:, None] * terms(u, fixed, u.sum(0))).sum()  # v_i and the masses
    as_col = scale * (weight[cols] * terms(u, fixed, fixed.sum(0))).sum()  # v_j, by symmetry
    (expected,) = torch.autograd.grad(as_row + as_col, u)
    assert torch.allclose(value.detach(), as_row.detach(), rtol=1e-12)
    assert torch.allclose(estimate, expected, rtol=1e-9, atol=1e-12)


def test_float32_assignments_that_underflow_keep_the_loss_and_its_gradient() -> None:
    """Sharp float32 assignments (exact zeros and subnormal entries, which
    ``without_underflow`` sets to 0) give the float64 loss and the float64 gradient of the
    head's logits (exact pair sums)."""
    module, _, inputs, hypers = kmeans_case()
    logits = torch.randn(300, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    logits = (logits * 40).requires_grad_()
    results = []
    for dtype in (torch.float32, torch.float64):
        v = torch.softmax(logits.to(dtype), 1)
        if dtype == torch.float32:
            tiny = torch.finfo(dtype).tiny
            assert bool((v == 0).any()) and bool(((v > 0) & (v < tiny**0.4)).any())
        objective = cluster.ClusterObjective(module.ir, hypers, "exact")
        objective.prepare({"x": inputs["x"].to(dtype)})
        value = objective.loss(v)
        (grad,) = torch.autograd.grad(value, logits)
        results.append((float(value), grad))
    (value32, grad32), (value64, grad64) = results
    assert value32 == pytest.approx(value64, rel=1e-5)
    assert torch.allclose(grad32, grad64, rtol=1e-3, atol=1e-5 * float(grad64.abs().max()))


def test_entropy_terms_at_zero() -> None:
    s = torch.tensor([0.0, 1e-30, 0.5, 1.0], dtype=torch.float32)
    value, slope = cluster_pairs.entropy_terms(s)
    tiny = torch.finfo(torch.float32).tiny
    expected = [0.0, 1e-30 * np.log(1e-30), 0.5 * np.log(0.5), 0.0]
    assert np.allclose(value.numpy(), expected, rtol=1e-6, atol=0)
    slopes = [np.log(tiny) + 1, np.log(1e-30) + 1, np.log(0.5) + 1, 1.0]
    assert np.allclose(slope.numpy(), slopes, rtol=1e-6)


def test_plan_picks_the_whole_data_path_and_its_normaliser() -> None:
    module = compile_spec(SPECS / "kmeans.icon")
    cls = module.load()

    def plan(n: int, spec=module, **kwargs: object):  # type: ignore[no-untyped-def]
        data = Dataset(name="blobs", x=np.zeros((n, 3), dtype=np.float32), y=None)
        return make_plan(spec, spec.load(), data, **kwargs)  # type: ignore[arg-type]

    assert not plan(1000).cluster and plan(1000).batch_size == 256
    assert plan(5000).cluster and plan(5000).normaliser == "exact"
    assert plan(9000).normaliser == "sampled" and plan(9000).negatives == cluster.NEGATIVES
    assert plan(9000).batch_size == 9000 and plan(9000).restarts == 10
    assert plan(300, normaliser="sampled", negatives=8).negatives == 8
    assert not plan(5000, normaliser="dense").cluster
    assert not plan(5000, batch_size=256).cluster
    debiased = compile_spec(SPECS / "debiased_infonce_clustering.icon")
    assert plan(5000, spec=debiased).cluster and plan(5000, spec=debiased).views
    simclr = compile_spec(SPECS / "simclr.icon")
    with pytest.raises(TrainError, match="or a cluster kernel q"):
        plan(50, spec=simclr, normaliser="exact")
    assert cls is not None


def test_training_on_the_whole_data_clusters_blobs(tmp_path: Path) -> None:
    x, y = blobs(240, dim=10)
    result = train(
        SPECS / "kmeans.icon",
        data=(x.astype(np.float32), y),
        normaliser="sampled",
        hyperparameters={"sigma": 3.0},
        epochs=60,
        restarts=3,
        out=tmp_path / "run",
        progress=False,
    )
    assert result.model is not None and result.model.plan.cluster
    assert result.metrics["nmi"] > 0.95
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "cluster kernel" in info["path"] and info["starts"]["side_by_side"]
    assert info["starts"]["chosen_by"].startswith("the whole-data loss")
    assert result.losses[-1] < result.losses[0]


def test_whole_data_starts_side_by_side_equal_one_after_another() -> None:
    x, y = blobs(120, dim=4)
    runs = [
        train(
            SPECS / "kmeans.icon",
            data=(x.astype(np.float32), y),
            normaliser="sampled",
            epochs=8,
            restarts=2,
            out=False,
            progress=False,
            evaluate=False,
            side_by_side=side,
            halving=False,  # every start to the end, as one after another
        )
        for side in (True, False)
    ]
    assert np.allclose(runs[0].embedding, runs[1].embedding, rtol=1e-5, atol=1e-7)
    assert np.allclose(runs[0].losses, runs[1].losses, rtol=1e-5)


def test_debiased_clustering_trains_on_views_of_the_whole_data() -> None:
    x, y = blobs(100, dim=6)
    result = train(
        SPECS / "debiased_infonce_clustering.icon",
        data=(x.astype(np.float32), y),
        normaliser="exact",
        epochs=5,
        restarts=2,
        out=False,
        progress=False,
    )
    assert result.model is not None and result.model.plan.cluster and result.model.plan.views
    assert all(np.isfinite(result.losses)) and result.losses[-1] < result.losses[0]


def test_halving_stops_the_weaker_starts_and_keeps_a_running_one(tmp_path: Path) -> None:
    """4 starts, 20 epochs: 2 stop after epoch 2 and 1 after epoch 6 (10% and 30%). The kept
    start trains as it does without halving (the same final score) and is the best of the
    starts still running."""
    x, y = blobs(160, dim=4)
    common: dict[str, Any] = {
        "data": (x.astype(np.float32), y),
        "normaliser": "sampled",
        "hyperparameters": {"sigma": 3.0},
        "epochs": 20,
        "restarts": 4,
        "progress": False,
        "evaluate": False,
    }
    train(SPECS / "kmeans.icon", out=tmp_path / "halved", **common)
    np.savez(tmp_path / "blobs.npz", x=x.astype(np.float32), y=y)
    options = ["--normaliser", "sampled", "--param", "sigma=3.0", "--epochs", "20"]
    run_cli(
        "train", SPECS / "kmeans.icon", "--data", tmp_path / "blobs.npz", *options,
        "--restarts", "4", "--all-starts", "--quiet", "--out", tmp_path / "all", expect=0,
    )  # fmt: skip
    halved, whole = (
        json.loads((tmp_path / name / "run.json").read_text())["starts"]
        for name in ("halved", "all")
    )
    assert sorted(halved["stopped_early"].values()) == [2, 2, 6] and whole["stopped_early"] == {}
    kept = halved["kept"]
    assert str(kept) not in halved["stopped_early"]
    assert halved["final_divergence"][kept - 1] == pytest.approx(
        whole["final_divergence"][kept - 1], rel=1e-6
    )
    running = [s for s in range(1, 5) if str(s) not in halved["stopped_early"]]
    assert kept == min(running, key=lambda s: halved["final_divergence"][s - 1])


def test_halving_counts_the_epochs_of_the_running_starts() -> None:
    assert large_data.halving_epochs(100) == {10, 30} and large_data.halving_epochs(3) == {1}
    assert large_data.start_epochs(10, 100, {10, 30}) == 10 * 10 + 5 * 20 + 3 * 70
    assert large_data.start_epochs(10, 20, {10, 30}) == 10 * 10 + 5 * 10
    assert large_data.start_epochs(3, 8, set()) == 24
