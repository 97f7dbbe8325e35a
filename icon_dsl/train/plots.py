"""The pictures ``icon-dsl train`` writes: the embedding, the loss curve, and p against q.

Every function draws on its own ``matplotlib.figure.Figure`` with an Agg canvas attached, so it
never touches pyplot's global state or the user's chosen backend, and nothing stays open after
it returns. Each writes one PNG at 100 dpi (creating the parent directory) and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
Snapshot = tuple[int, np.ndarray, np.ndarray]


def plot_embedding(emb: np.ndarray, y: np.ndarray | None, path: str | Path, title: str) -> Path:
    """Scatter an embedding (N, D), coloured by the labels ``y`` (N,) when given.

    With D > 2 the points are first projected to 2-D by PCA, and the title says so; with D == 1
    they are drawn along a line. Up to 20 classes get a legend, more get a colour bar.
    """
    points = np.asarray(emb, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"plot_embedding expects a non-empty (N, D) array, got {points.shape}")
    labels = None if y is None else np.asarray(y).ravel()
    if labels is not None and len(labels) != len(points):
        raise ValueError(f"plot_embedding: {len(points)} points but {len(labels)} labels")
    xy, note = _to_2d(points)
    fig = _new_figure((6.4, 5.6))
    ax = fig.add_subplot()
    size = float(np.clip(20000 / len(xy), 4, 30))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, color="tab:blue", alpha=0.8, linewidths=0)
    else:
        _scatter_by_label(fig, ax, xy, labels, size)
    ax.set_title(title + note)
    ax.set_xlabel("PC 1" if note.startswith(" (PCA") else "dim 1")
    ax.set_ylabel("PC 2" if note.startswith(" (PCA") else "dim 2")
    return _save(fig, path)


def plot_loss(
    losses: Sequence[float], path: str | Path, title: str = "training loss", xlabel: str = "epoch"
) -> Path:
    """Draw the loss curve, one point per entry of ``losses`` (numbered from 1).

    Non-finite entries show as gaps. The y axis turns logarithmic when all losses are positive
    and span more than two orders of magnitude.
    """
    values = np.asarray(list(losses), dtype=np.float64)
    if values.size == 0:
        raise ValueError("plot_loss needs at least one loss value")
    fig = _new_figure((6.4, 4.0))
    ax = fig.add_subplot()
    steps = np.arange(1, values.size + 1)
    ax.plot(steps, values, marker="o" if values.size <= 50 else None, markersize=3)
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_neighbour_distributions(
    snapshots: Sequence[Snapshot],
    anchors: Sequence[int],
    path: str | Path,
    max_epochs: int = 4,
    max_bars: int = 12,
) -> Path:
    """Draw the target p(.|i) and the learned q(.|i) side by side for some anchors and epochs.

    Each snapshot is ``(epoch, p_rows, q_rows)`` where both arrays have shape (len(anchors), M):
    row a is the distribution over the same M neighbours for anchor ``anchors[a]``. The grid
    has one row per anchor and one column per epoch (at most ``max_epochs``, evenly spaced from
    first to last). Each panel shows the ``max_bars`` neighbours with the largest p in the last
    snapshot (the same ones in every epoch), an "other" bar with the remaining mass, and
    KL(p || q) of the whole row in its title, so one can watch q converge to p.
    """
    anchor_ids = list(anchors)
    checked = _check_snapshots(snapshots, len(anchor_ids))
    shown = _pick_evenly(checked, max_epochs)
    last_p = checked[-1][1]
    columns = [np.argsort(-last_p[a], kind="stable")[:max_bars] for a in range(len(anchor_ids))]
    fig = _new_figure((3.4 * len(shown), 2.6 * len(anchor_ids)))
    grid = fig.subplots(len(anchor_ids), len(shown), squeeze=False, sharey="row")
    for row, anchor in enumerate(anchor_ids):
        for col, (epoch, p_rows, q_rows) in enumerate(shown):
            ax = grid[row][col]
            _draw_pq_panel(ax, p_rows[row], q_rows[row], columns[row])
            kl = _kl(p_rows[row], q_rows[row])
            ax.set_title(f"anchor {anchor}, epoch {epoch}\nKL(p||q) = {kl:.3f}", fontsize=9)
            if col == 0:
                ax.set_ylabel("probability")
    handles, labels = grid[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", ncols=2, fontsize=9)
    fig.suptitle("target p(j|i) vs learned q(j|i) over training (top neighbours by p)")
    return _save(fig, path)


def _new_figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=DPI, format="png")
    fig.clear()
    return target


def _to_2d(points: np.ndarray) -> tuple[np.ndarray, str]:
    """Return 2-D coordinates and a note for the title saying how they were obtained."""
    dim = points.shape[1]
    if dim == 2:
        return points, ""
    if dim == 1:
        return np.column_stack([points[:, 0], np.zeros(len(points))]), " (1-D embedding)"
    if len(points) < 2:
        return points[:, :2], f" (first 2 of {dim} dims)"
    from sklearn.decomposition import PCA

    projected = PCA(n_components=2, random_state=0).fit_transform(points)
    return projected, f" (PCA of {dim}-D embedding to 2-D)"


def _scatter_by_label(
    fig: Figure, ax: Axes, xy: np.ndarray, labels: np.ndarray, size: float
) -> None:
    classes = np.unique(labels)
    if classes.size <= 20:
        palette = _palette(classes.size)
        for colour, label in zip(palette, classes, strict=True):
            mask = labels == label
            ax.scatter(
                xy[mask, 0],
                xy[mask, 1],
                s=size,
                color=colour,
                alpha=0.8,
                linewidths=0,
                label=str(label),
            )
        ax.legend(
            title="label", fontsize=8, markerscale=max(1.0, float(np.sqrt(40 / size))), loc="best"
        )
        return
    mappable = ax.scatter(
        xy[:, 0], xy[:, 1], s=size, c=labels, cmap="viridis", alpha=0.8, linewidths=0
    )
    fig.colorbar(mappable, ax=ax, label="label")


def _palette(count: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    name = "tab10" if count <= 10 else "tab20"
    cmap = colormaps[name]
    return [cmap(i) for i in range(count)]


def _check_snapshots(snapshots: Sequence[Snapshot], n_anchors: int) -> list[Snapshot]:
    if n_anchors == 0:
        raise ValueError("plot_neighbour_distributions needs at least one anchor")
    if len(snapshots) == 0:
        raise ValueError("plot_neighbour_distributions needs at least one snapshot")
    checked: list[Snapshot] = []
    width = np.asarray(snapshots[0][1]).shape[-1]
    for index, (epoch, p_rows, q_rows) in enumerate(snapshots):
        p = np.asarray(p_rows, dtype=np.float64)
        q = np.asarray(q_rows, dtype=np.float64)
        expected = (n_anchors, width)
        for name, array in (("p_rows", p), ("q_rows", q)):
            if array.shape != expected:
                raise ValueError(
                    f"snapshot {index} (epoch {epoch}): {name} has shape {array.shape}, "
                    f"expected {expected} (anchors x neighbours)"
                )
        checked.append((int(epoch), p, q))
    return checked


def _pick_evenly(items: list[Snapshot], count: int) -> list[Snapshot]:
    if len(items) <= count:
        return items
    positions = np.unique(np.linspace(0, len(items) - 1, max(count, 1)).round().astype(int))
    return [items[i] for i in positions]


def _draw_pq_panel(ax: Axes, p: np.ndarray, q: np.ndarray, columns: np.ndarray) -> None:
    rest = np.setdiff1d(np.arange(p.size), columns)
    p_shown = np.append(p[columns], p[rest].sum()) if rest.size else p[columns]
    q_shown = np.append(q[columns], q[rest].sum()) if rest.size else q[columns]
    names = [str(j) for j in columns] + (["other"] if rest.size else [])
    positions = np.arange(len(names))
    ax.bar(positions - 0.2, p_shown, width=0.4, color="tab:blue", label="target p")
    ax.bar(positions + 0.2, q_shown, width=0.4, color="tab:orange", label="learned q")
    ax.set_xticks(positions, names, fontsize=7, rotation=90 if len(names) > 8 else 0)
    ax.set_xlabel("neighbour j", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats over the entries where p > 0 (q floored at 1e-12)."""
    support = p > 0
    return float(np.sum(p[support] * np.log(p[support] / np.maximum(q[support], 1e-12))))
