"""The PNGs of icon_dsl.train.plots: written, non-empty, readable, and no pyplot state left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from icon_dsl.train.plots import (
    divergence_of_rows,
    hungarian_order,
    plot_clusters,
    plot_embedding,
    plot_loss,
    plot_neighbour_distributions,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path, width: int, height: int) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 5000
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height, width)  # figure inches x dpi 100
    assert pixels.std() > 0.01  # not a blank canvas


def _snapshots(n_anchors: int, m: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(m, 0.3), size=n_anchors)
    noise = rng.dirichlet(np.full(m, 3.0), size=n_anchors)
    epochs = [0, 1, 2, 5, 10, 20, 40]
    return [
        (e, p, (1 - t) * noise + t * p) for e, t in zip(epochs, np.linspace(0, 1, 7), strict=True)
    ]


def test_plot_embedding_2d_and_pca(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    emb = rng.normal(size=(200, 6)) + y[:, None]
    written = plot_embedding(emb[:, :2], y, tmp_path / "a" / "emb2.png", "two dims")
    assert written == tmp_path / "a" / "emb2.png"  # parent directory created
    _check_png(written, 640, 560)
    _check_png(plot_embedding(emb, y, tmp_path / "emb6.png", "six dims"), 640, 560)
    _check_png(plot_embedding(emb[:, :1], None, tmp_path / "emb1.png", "one dim"), 640, 560)
    many = rng.integers(0, 30, 200)
    _check_png(plot_embedding(emb, many, tmp_path / "many.png", "30 classes"), 640, 560)


def test_plot_embedding_title_says_pca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.axes import Axes

    titles: list[str] = []
    original = Axes.set_title

    def spy(self: Axes, label: str, *args: object, **kwargs: object) -> object:
        titles.append(label)
        return original(self, label, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Axes, "set_title", spy)
    plot_embedding(np.random.default_rng(0).normal(size=(30, 5)), None, tmp_path / "e.png", "z")
    assert titles == ["z (PCA of 5-D embedding to 2-D)"]


def test_plot_embedding_rejects_mismatched_labels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="10 points but 9 labels"):
        plot_embedding(np.zeros((10, 2)), np.zeros(9), tmp_path / "e.png", "t")


def test_plot_loss(tmp_path: Path) -> None:
    losses = [float(v) for v in 3.0 * np.exp(-np.arange(40) / 8) + 0.2]
    _check_png(plot_loss(losses, tmp_path / "loss.png"), 640, 400)
    with pytest.raises(ValueError, match="at least one loss"):
        plot_loss([], tmp_path / "empty.png")


def test_plot_neighbour_distributions(tmp_path: Path) -> None:
    path = plot_neighbour_distributions(_snapshots(3, 25), [4, 10, 99], tmp_path / "pq.png")
    _check_png(path, 4 * 340, 3 * 260)  # 4 of the 7 epochs shown, one row per anchor


def test_plot_neighbour_distributions_checks_shapes(tmp_path: Path) -> None:
    snapshots = _snapshots(2, 8)
    bad = (3, snapshots[1][1], snapshots[1][2][:, :7])
    with pytest.raises(
        ValueError, match=r"snapshot 1 \(epoch 3\): q_rows has shape \(2, 7\), expected \(2, 8\)"
    ):
        plot_neighbour_distributions([snapshots[0], bad], [0, 1], tmp_path / "pq.png")
    with pytest.raises(ValueError, match=r"p_rows has shape \(2, 8\), expected \(3, 8\)"):
        plot_neighbour_distributions(snapshots, [0, 1, 2], tmp_path / "pq.png")


def test_no_pyplot_state_leaks(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    before = plt.get_fignums()
    plot_embedding(np.zeros((5, 2)), None, tmp_path / "e.png", "t")
    plot_loss([1.0, 0.5], tmp_path / "l.png")
    plot_neighbour_distributions(_snapshots(1, 4), [0], tmp_path / "pq.png")
    assert plt.get_fignums() == before
    assert matplotlib.get_backend() == backend


def _spy_titles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    titles: list[str] = []
    for cls, name in ((Axes, "set_title"), (Figure, "suptitle")):
        original = getattr(cls, name)

        def spy(self: object, label: str, *a: object, _o: object = original, **k: object) -> object:
            titles.append(label)
            return _o(self, label, *a, **k)  # type: ignore[operator]

        monkeypatch.setattr(cls, name, spy)
    return titles


@pytest.mark.parametrize(
    ("divergence", "name"), [("kl", "KL(p||q)"), ("reverse_kl", "KL(q||p)"), ("js", "JS(p, q)")]
)
def test_neighbour_titles_say_the_spec_divergence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, divergence: str, name: str
) -> None:
    titles = _spy_titles(monkeypatch)
    snapshots = _snapshots(1, 6)
    plot_neighbour_distributions(snapshots, [0], tmp_path / "pq.png", divergence=divergence)
    _, p, q = snapshots[-1]
    value = divergence_of_rows(p[0], q[0], divergence)
    assert f"anchor 0, epoch 40\n{name} = {value:.3f}" in titles
    assert any(t.endswith(f"the loss is {divergence} = {name}") for t in titles)
    with pytest.raises(ValueError, match="unknown divergence 'hellinger'"):
        plot_neighbour_distributions(snapshots, [0], tmp_path / "x.png", divergence="hellinger")


def test_divergences_against_scipy() -> None:
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import entropy

    rng = np.random.default_rng(1)
    p, q = rng.dirichlet(np.ones(9)), rng.dirichlet(np.ones(9))
    assert divergence_of_rows(p, q, "kl") == pytest.approx(entropy(p, q))
    assert divergence_of_rows(p, q, "reverse_kl") == pytest.approx(entropy(q, p))
    assert divergence_of_rows(p, q, "js") == pytest.approx(jensenshannon(p, q) ** 2)
    p[0] = 0.0
    q[1] = 0.0
    assert divergence_of_rows(p / p.sum(), q / q.sum(), "kl") == np.inf  # p > 0 = q at 1


def test_neighbour_panels_show_the_support_and_summarise_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kNN p (5 neighbours of 200) and a q peaked on 3 of them: 5 bars, no zero columns, the
    rest's count and mass in text (no "other" bar)."""
    from matplotlib.axes import Axes

    bars: list[int] = []
    texts: list[str] = []
    original_bar, original_text = Axes.bar, Axes.text

    def bar(self: Axes, x: Any, h: Any, *a: Any, **k: Any) -> Any:
        bars.append(len(x))
        return original_bar(self, x, h, *a, **k)

    def text(self: Axes, x: float, y: float, s: str, *a: Any, **k: Any) -> Any:
        texts.append(s)
        return original_text(self, x, y, s, *a, **k)

    monkeypatch.setattr(Axes, "bar", bar)
    monkeypatch.setattr(Axes, "text", text)
    p = np.zeros((1, 200))
    p[0, [3, 9, 27, 81, 150]] = 0.2
    q = np.full((1, 200), 0.1 / 197)
    q[0, [3, 9, 27]] = 0.3
    plot_neighbour_distributions([(0, p, q)], [0], tmp_path / "pq.png")
    assert bars == [5, 5]  # p's bars and q's bars over the same 5 neighbours
    assert texts == [f"195 others: p 0.000, q {195 * 0.1 / 197:.3f}"]


def test_plot_clusters_orders_clusters_by_their_matched_label(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    clusters = np.array([2, 0, 3, 1])[y]  # cluster 2 is label 0, cluster 0 is label 1, ...
    clusters[:5] = 4  # a fifth, small cluster of label-0 samples
    table = np.zeros((5, 4), dtype=np.int64)
    np.add.at(table, (clusters, y), 1)
    assert list(hungarian_order(table)) == [2, 0, 3, 1, 4]
    soft = np.eye(5)[clusters] + rng.uniform(0, 0.1, (120, 5))
    _check_png(plot_clusters(soft, y, tmp_path / "c.png", "clusters"), 1100, 560)
    _check_png(plot_clusters(clusters, None, tmp_path / "sizes.png", "sizes"), 640, 400)
    with pytest.raises(ValueError, match="120 assignments but 7 labels"):
        plot_clusters(clusters, y[:7], tmp_path / "bad.png", "t")
