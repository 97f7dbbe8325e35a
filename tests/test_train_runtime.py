"""The training runtime: determinism, resume, outputs, metrics per kind, clear errors, the CLI.

Fast: small subsets of digits and a few epochs; every test here trains for well under a second
of real work on an idle machine.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import run_cli
from sklearn.exceptions import NotFittedError

from icon_dsl.train import initialise, loop, plots, runtime
from icon_dsl.train.data import Dataset, load_dataset, load_digits
from icon_dsl.train.errors import DataError, TrainError
from icon_dsl.train.estimator import Estimator
from icon_dsl.train.plan import CLUSTER_RESTARTS
from icon_dsl.train.runtime import train
from icon_dsl.train.side_by_side import SideBySide

SPECS = Path(__file__).resolve().parent.parent / "specs"


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def subset(ds: Dataset, n: int) -> Dataset:
    assert ds.y is not None
    return Dataset(name=f"digits{n}", x=ds.x[:n].copy(), y=ds.y[:n].copy(), image_shape=(8, 8))


def quick(spec: str, data: Dataset, **kwargs: object) -> runtime.TrainResult:
    options: dict[str, object] = {"epochs": 2, "out": False, "progress": False, **kwargs}
    return train(SPECS / f"{spec}.icon", data=data, **options)  # type: ignore[arg-type]


def test_same_seed_same_result_and_other_seed_differs(digits: Dataset) -> None:
    data = subset(digits, 120)
    first = quick("tsne", data, epochs=3)
    second = quick("tsne", data, epochs=3)
    other = quick("tsne", data, epochs=3, seed=1, batch_size=60)
    assert np.array_equal(first.embedding, second.embedding)
    assert first.losses == second.losses
    drop = {"wall_time_s"}
    assert {k: v for k, v in first.metrics.items() if k not in drop} == {
        k: v for k, v in second.metrics.items() if k not in drop
    }
    assert not np.array_equal(first.embedding, other.embedding)


def test_full_batch_for_table_mappers_and_views_for_augmentation(digits: Dataset) -> None:
    data = subset(digits, 120)
    tsne = quick("tsne", data, epochs=1).model
    simclr = quick("simclr", data, epochs=1, batch_size=40).model
    assert tsne is not None and simclr is not None
    assert tsne.plan.table and tsne.plan.full_batch and tsne.plan.batch_size == 120
    assert simclr.plan.views and not simclr.plan.full_batch and simclr.plan.batch_size == 40


@pytest.fixture
def no_pictures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip writing the run folder's files except checkpoints (the slow part is matplotlib)."""
    from icon_dsl.train import report

    monkeypatch.setattr(report, "write_outputs", lambda *args, **kwargs: None)


def _killed_and_resumed(
    monkeypatch: pytest.MonkeyPatch, saves: int, spec: str, data: Dataset, **options: object
) -> runtime.TrainResult:
    """Run ``spec``, kill it right after its ``saves``-th checkpoint, resume it, return that.

    Checks that the resumed run trains only the epochs the checkpoint had not done yet."""
    count = {"saves": 0, "epochs": 0}
    real_save = loop.save_checkpoint

    def save_then_die(out_dir: Path, state: dict) -> None:
        real_save(out_dir, state)
        count["saves"] += 1
        if count["saves"] == saves:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        quick(spec, data, **options)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    real_epoch = loop.Run.epoch

    def counted_epoch(run: loop.Run, epoch: int) -> float:
        count["epochs"] += 1
        return real_epoch(run, epoch)

    monkeypatch.setattr(loop.Run, "epoch", counted_epoch)
    real_side_epoch = SideBySide.epoch

    def counted_side_epoch(side: SideBySide, epoch: int) -> list[float]:
        count["side_epochs"] = count.get("side_epochs", 0) + 1
        return real_side_epoch(side, epoch)

    monkeypatch.setattr(SideBySide, "epoch", counted_side_epoch)
    resumed = quick(spec, data, resume=True, **options)
    assert resumed.model is not None
    plan = resumed.model.plan
    if "side_epochs" in count:  # every start at once: one checkpoint per epoch of all
        assert count["side_epochs"] == plan.epochs - saves and count["epochs"] == 0
    else:
        assert count["epochs"] == plan.restarts * plan.epochs - saves
    return resumed


@pytest.mark.usefixtures("no_pictures")
@pytest.mark.parametrize(
    ("spec", "batch"),
    [("simclr", 40), ("tsne", None), ("kmeans", 40), ("supcon", 40), ("tsne_joint", None)],
)
def test_resume_continues_to_the_uninterrupted_result(
    digits: Dataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spec: str,
    batch: int | None,
) -> None:
    """Views, a full-batch table (p cached in the module), a clustering head, labels."""
    data = subset(digits, 160)
    options: dict[str, object] = {"epochs": 3, "batch_size": batch}
    whole = quick(spec, data, out=tmp_path / "whole", **options)
    # killed right after the epoch-2 checkpoint, then resumed
    resumed = _killed_and_resumed(monkeypatch, 2, spec, data, out=tmp_path / "cut", **options)

    assert resumed.losses == whole.losses
    assert np.array_equal(resumed.embedding, whole.embedding)
    for key, value in whole.metrics.items():
        if key != "wall_time_s":
            assert resumed.metrics[key] == value, key


def test_restarts_keep_the_start_with_the_lowest_final_divergence(
    digits: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = subset(digits, 160)
    single = quick("kmeans", data, epochs=3, batch_size=40, restarts=1)
    several = quick(
        "kmeans", data, epochs=3, batch_size=40, restarts=4, out=tmp_path / "run", progress=True
    )
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    kls, kept = info["starts"]["final_divergence"], info["starts"]["kept"]
    # starts are numbered from 1 in run.json as in the table
    assert f"kept start {kept} of 4 (the lowest final reverse_kl)" in capsys.readouterr().out
    assert len(kls) == 4 and len(set(kls)) == 4  # four different starts
    assert kls[0] == single.metrics["reverse_kl"]  # start 1 is the single run (same seed)
    assert kept == int(np.argmin(kls)) + 1 and several.metrics["reverse_kl"] == min(kls)
    assert len(several.losses) == 3  # the kept start's curve
    # the kept start retrained on its own gives the same assignments
    assert several.model is not None and single.model is not None
    assert several.model.plan.restarts == 4 and single.model.plan.restarts == 1
    if kept == 1:
        assert np.array_equal(several.embedding, single.embedding)
    else:
        assert not np.array_equal(several.embedding, single.embedding)


def test_clustering_heads_restart_by_default_and_others_do_not(digits: Dataset) -> None:
    data = subset(digits, 120)
    kmeans = quick("kmeans", data, epochs=1, batch_size=60).model
    tsne = quick("tsne", data, epochs=1).model
    assert kmeans is not None and tsne is not None
    assert kmeans.plan.restarts == CLUSTER_RESTARTS and tsne.plan.restarts == 1
    with pytest.raises(TrainError, match="restarts must be at least 1, got 0"):
        quick("kmeans", data, restarts=0)


@pytest.mark.usefixtures("no_pictures")
def test_resume_in_a_later_start_ends_as_the_uninterrupted_run(
    digits: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = subset(digits, 160)
    options: dict[str, object] = {
        "epochs": 2,
        "batch_size": 40,
        "restarts": 3,
        "side_by_side": False,
    }
    whole = quick("kmeans", data, out=tmp_path / "whole", **options)
    # killed after epoch 1 of the second start (the third checkpoint), then resumed
    resumed = _killed_and_resumed(monkeypatch, 3, "kmeans", data, out=tmp_path / "cut", **options)
    assert resumed.losses == whole.losses
    assert np.array_equal(resumed.embedding, whole.embedding)
    assert resumed.metrics["reverse_kl"] == whole.metrics["reverse_kl"]


def test_clustering_head_starts_at_scikit_learns_kmeans_plus_plus_seeds(digits: Dataset) -> None:
    """The initial soft assignments are a softmax of -|x - mu|^2 over sklearn's seeds mu."""
    from sklearn.cluster import kmeans_plusplus

    x = digits.x[:300].astype(np.float64)
    mapper = torch.nn.Sequential(torch.nn.Linear(64, 10), torch.nn.Softmax(dim=1)).double()
    initialise.centroid_init(mapper, x, 10, seed=3)
    centres, _ = kmeans_plusplus(x, 10, random_state=3)
    d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    scale = d2.min(1).mean() / initialise.CENTROID_INIT_SHARPNESS
    expected = torch.softmax(torch.as_tensor(-d2 / scale), dim=1)
    with torch.no_grad():
        got = mapper(torch.as_tensor(x))
    assert torch.allclose(got, expected, atol=1e-9)


@pytest.mark.usefixtures("no_pictures")
def test_resume_refuses_a_checkpoint_of_another_run(digits: Dataset, tmp_path: Path) -> None:
    data = subset(digits, 120)
    quick("tsne", data, epochs=1, out=tmp_path)
    with pytest.raises(TrainError, match="different run"):
        quick("tsne", data, epochs=1, out=tmp_path, resume=True, seed=5)


def test_every_p_q_snapshot_is_one_that_neighbours_png_draws(
    digits: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot is a dense q of the evaluation batch and part of every checkpoint: the run
    takes only the epochs the picture shows, evenly spaced from the start to the last epoch."""
    drawn = inspect.signature(plots.plot_neighbour_distributions).parameters["max_epochs"].default
    for epochs in range(1, 400):
        taken = sorted(loop.snapshot_epochs(epochs))
        assert taken[0] == 0 and taken[-1] == epochs and len(taken) <= drawn
        gaps = np.diff(taken)
        assert gaps.max() - gaps.min() <= 1, (epochs, taken)
    shown: list[int] = []

    def record(
        snapshots: list[tuple[int, np.ndarray, np.ndarray]], *args: object, **kw: object
    ) -> None:
        shown.extend(epoch for epoch, _, _ in snapshots)

    monkeypatch.setattr(plots, "plot_neighbour_distributions", record)
    quick("tsne", subset(digits, 120), epochs=9, out=tmp_path)
    assert shown == [0, 3, 6, 9]


def test_output_folder_holds_every_artefact(digits: Dataset, tmp_path: Path) -> None:
    result = quick("tsne", subset(digits, 120), out=tmp_path / "run")
    assert result.out_dir == tmp_path / "run"
    names = {p.name for p in result.out_dir.iterdir()}
    expected = {
        "metrics.json",
        "run.json",
        "spec.icon",
        "weights.pt",
        "embedding.npy",
        "embedding.png",
        "loss.png",
        "neighbours.png",
        "checkpoint.pt",
    }
    assert expected <= names
    assert json.loads((result.out_dir / "metrics.json").read_text()) == pytest.approx(
        result.metrics
    )
    assert np.array_equal(np.load(result.out_dir / "embedding.npy"), result.embedding)
    weights = torch.load(result.out_dir / "weights.pt", weights_only=True)
    assert set(weights) == {"mapper", "loss"}


@pytest.mark.parametrize(
    ("spec", "keys"),
    [
        ("tsne", {"knn_accuracy", "linear_probe_accuracy", "trustworthiness", "kl"}),
        ("simclr", {"knn_accuracy", "linear_probe_accuracy", "kl"}),
        ("kmeans", {"cluster_accuracy", "nmi", "ari", "reverse_kl"}),  # the spec's divergence
        ("cross_entropy", {"knn_accuracy", "linear_probe_accuracy", "kl"}),
    ],
)
def test_metrics_fit_the_kind(digits: Dataset, spec: str, keys: set[str]) -> None:
    result = quick(spec, subset(digits, 120), epochs=1, batch_size=60)
    assert set(result.metrics) == keys | {"wall_time_s"}
    assert all(np.isfinite(v) for v in result.metrics.values())
    assert result.embedding.shape[0] == 120
    assert len(result.losses) == 1


def test_missing_labels_are_a_data_error(tmp_path: Path, digits: Dataset) -> None:
    path = tmp_path / "features.npy"
    np.save(path, digits.x[:50])
    with pytest.raises(DataError, match="needs labels"):
        train(SPECS / "supcon.icon", data=str(path), epochs=1, out=False, progress=False)


def _side_and_graph_npz(tmp_path: Path, digits: Dataset, n: int = 80, **arrays: object) -> str:
    """A .npz of n digits with side information (every 4th pixel) and a symmetric kNN graph."""
    x = digits.x[:n]
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(d2, axis=1)[:, 1:6]
    graph = np.zeros((n, n), dtype=np.float32)
    graph[np.arange(n)[:, None], nearest] = 1.0
    content = {"x": x, "side": x[:, ::4], "adjacency": np.maximum(graph, graph.T), **arrays}
    path = tmp_path / "with_side.npz"
    np.savez(path, **content)  # type: ignore[arg-type]
    return str(path)


@pytest.mark.parametrize(("spec", "key"), [("lgsimclr", "side"), ("normalized_cuts", "adjacency")])
def test_side_information_and_graphs_come_from_the_npz(
    tmp_path: Path, digits: Dataset, spec: str, key: str
) -> None:
    """`side` specs read the .npz's side array, graph(index) specs its adjacency; without them
    the run stops before training with a DataError naming what is missing."""
    result = train(SPECS / f"{spec}.icon", data=_side_and_graph_npz(tmp_path, digits),
                   epochs=1, out=False, progress=False)  # fmt: skip
    assert result.embedding.shape[0] == 80 and np.isfinite(result.metrics["kl"])
    bare = tmp_path / "bare.npz"
    np.savez(bare, x=digits.x[:80])
    need = "side information" if key == "side" else "a graph over the samples"
    with pytest.raises(DataError, match=f"needs {need}.*'{key}'"):
        train(SPECS / f"{spec}.icon", data=str(bare), epochs=1, out=False, progress=False)


def test_bad_side_information_and_graphs_are_named(tmp_path: Path, digits: Dataset) -> None:
    short = _side_and_graph_npz(tmp_path, digits, side=digits.x[:10])
    with pytest.raises(DataError, match=r"\['side'\]: 10 rows of side information for 80"):
        load_dataset(short)
    wrong = _side_and_graph_npz(tmp_path, digits, adjacency=np.ones((80, 3), np.float32))
    with pytest.raises(DataError, match=r"\['adjacency'\]: the graph must be \(80, 80\)"):
        load_dataset(wrong)
    negative = -np.eye(80, dtype=np.float32)
    bad = _side_and_graph_npz(tmp_path, digits, adjacency=negative)
    with pytest.raises(DataError, match="nonnegative, row 0 column 0"):
        load_dataset(bad)


def test_required_and_unknown_hyperparameters_are_named(digits: Dataset) -> None:
    data = subset(digits, 60)
    with pytest.raises(TrainError, match=r"sigma .*--param sigma="):
        quick("card", data)
    with pytest.raises(TrainError, match="unknown hyperparameter.*bogus"):
        quick("simclr", data, hyperparameters={"bogus": 1.0})
    result = quick("card", data, epochs=1, hyperparameters={"sigma": 1.0})
    assert np.isfinite(result.metrics["kl"])


def test_estimator_transform_for_networks_and_a_clear_error_for_tables(digits: Dataset) -> None:
    assert digits.y is not None
    x, y = digits.x[:120], digits.y[:120]
    tsne = Estimator(SPECS / "tsne.icon", epochs=1)
    assert tsne.fit_transform(x).shape == (120, 2)
    with pytest.raises(TrainError, match="table"):
        tsne.transform(x)
    classifier = Estimator(SPECS / "cross_entropy.icon", epochs=2, batch_size=40).fit(x, y)
    assert classifier.transform(digits.x[120:150]).shape == (30, 32)
    assert classifier.predict(digits.x[120:150]).shape == (30,)
    with pytest.raises(NotFittedError, match="not fitted"):  # scikit-learn's error
        Estimator(SPECS / "tsne.icon").transform(x)


def test_cli_exit_codes(tmp_path: Path, digits: Dataset) -> None:
    unlabeled = tmp_path / "x.npy"
    np.save(unlabeled, digits.x[:60])
    ran = run_cli("train", SPECS / "supcon.icon", "--data", unlabeled, expect=1)
    assert "needs labels" in ran.err
    ran = run_cli("train", tmp_path / "missing.icon", expect=1)
    assert "does not exist" in ran.err
    ran = run_cli("train", SPECS / "card.icon", "--data", unlabeled, expect=1)
    assert "--param sigma=" in ran.err
    run_cli("train", SPECS / "tsne.icon", "--param", "oops", expect=2)
    labelled = tmp_path / "small.npz"
    assert digits.y is not None
    np.savez(labelled, x=digits.x[:80], y=digits.y[:80])
    out = tmp_path / "run"
    args = ["train", str(SPECS / "tsne.icon"), "--data", str(labelled), "--epochs", "2"]
    run_cli(*args, "--out", out, "--quiet", expect=0)
    assert (out / "metrics.json").is_file()
    ran = run_cli(*args, "--out", out, "--resume", expect=0)
    assert "trustworthiness" in ran.out


def test_cluster_specs_picture_clusters_against_labels_and_name_their_divergence(
    digits: Dataset, tmp_path: Path
) -> None:
    """kmeans.icon's loss is the reverse KL: its metric, run.json and pictures say so, and its
    picture is the cluster-by-label table (no PCA scatter of the assignments)."""
    result = quick("kmeans", subset(digits, 120), epochs=1, restarts=1, out=tmp_path / "run")
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"clusters.png", "neighbours.png", "loss.png"} <= names
    assert "embedding.png" not in names
    assert "reverse_kl" in result.metrics and "kl" not in result.metrics
    assert json.loads((tmp_path / "run" / "run.json").read_text())["divergence"] == "reverse_kl"
