"""The pictures ``icon-dsl train`` writes: the embedding, the loss curve, and p against q.

Every function draws on its own ``matplotlib.figure.Figure`` with an Agg canvas attached, so it
never touches pyplot's global state or the user's chosen backend, and nothing stays open after
it returns. Each writes one PNG at 100 dpi (creating the parent directory) and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from .. import registry

if TYPE_CHECKING:
    from matplotlib.artist import Artist
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


#: How each divergence is written in titles, as a function of the row's p and q.
# the registry's short form of each divergence, for titles and the metrics table
DIVERGENCE_TITLES = {block.name: block.symbol for block in registry.blocks("divergence")}
#: A neighbour is drawn when p or q gives it at least this share of the row's largest value
#: (so a kNN p's k neighbours and q's real competitors show, not columns of zeros).
VISIBLE_SHARE = 0.02
LOG_SPAN = 100.0


def plot_neighbour_distributions(
    snapshots: Sequence[Snapshot],
    anchors: Sequence[int],
    path: str | Path,
    max_epochs: int = 4,
    max_bars: int = 12,
    divergence: str = "kl",
) -> Path:
    """Draw the target p(.|i) and the learned q(.|i) side by side for some anchors and epochs.

    Each snapshot is ``(epoch, p_rows, q_rows)`` where both arrays have shape (len(anchors), M):
    row a is the distribution over the same M neighbours for anchor ``anchors[a]``. The grid
    has one row per anchor and one column per epoch (at most ``max_epochs``, evenly spaced from
    first to last). Each panel shows the neighbours in the support of p or q: those to which p
    or q, in any shown epoch, gives at least ``VISIBLE_SHARE`` of the row's largest value (at
    most ``max_bars``, the largest first, the same ones in every epoch). The mass and number
    of the neighbours left out are written in the panel, not drawn as a bar. The title gives
    the spec's ``divergence`` (``kl``, ``reverse_kl`` or ``js``) of the whole row.
    """
    if divergence not in DIVERGENCE_TITLES:
        known = ", ".join(DIVERGENCE_TITLES)
        raise ValueError(f"unknown divergence {divergence!r}; expected one of {known}")
    anchor_ids = list(anchors)
    checked = _check_snapshots(snapshots, len(anchor_ids))
    shown = _pick_evenly(checked, max_epochs)
    columns = [_visible_columns(shown, a, max_bars) for a in range(len(anchor_ids))]
    # no layout engine: _place_grid lays the panels out from one measurement instead
    fig = _new_figure((3.4 * len(shown), 2.6 * len(anchor_ids)), layout=None)
    grid = fig.subplots(len(anchor_ids), len(shown), squeeze=False, sharey="row")
    name = DIVERGENCE_TITLES[divergence]
    for row, anchor in enumerate(anchor_ids):
        _log_scale_if_spread(grid[row], shown, row, columns[row])
        for col, (epoch, p_rows, q_rows) in enumerate(shown):
            ax = grid[row][col]
            _draw_pq_panel(ax, p_rows[row], q_rows[row], columns[row])
            value = divergence_of_rows(p_rows[row], q_rows[row], divergence)
            # a fixed y: matplotlib would re-measure the y ticks at every draw to place it
            title = f"anchor {anchor}, epoch {epoch}\n{name} = {value:.3f}"
            ax.set_title(title, fontsize=9, y=1.0)
            if col == 0:
                ax.set_ylabel("probability")
    handles, labels = grid[0][0].get_legend_handles_labels()
    legend = fig.legend(handles, labels, loc="upper right", ncols=2, fontsize=9)
    heading = fig.suptitle(
        f"target p(j|i) vs learned q(j|i) over training; the loss is {divergence} = {name}"
    )
    _place_grid(fig, grid, [legend, heading])
    for row in grid:
        _log_ticks_in_view(row[0])
    return _save(fig, path)


def plot_clusters(
    assignments: np.ndarray, y: np.ndarray | None, path: str | Path, title: str
) -> Path:
    """Draw what a clustering found: cluster sizes and, with labels, the cluster-by-label table.

    ``assignments`` are hard cluster ids (N,) or soft assignments (N, C) (reduced to their
    argmax; C then fixes the number of clusters, empty ones included). With labels ``y`` (N,)
    the left panel is the contingency table (count of each label in each cluster) with the
    clusters in the order of the Hungarian matching to the labels: cluster in row j is the one
    matched to the j-th label, so a good clustering shows a bright diagonal; unmatched clusters
    follow. The right panel is the size of each cluster in that order. Without labels only the
    sizes are drawn, largest first.
    """
    hard, n_clusters = _hard_assignments(assignments)
    labels = None if y is None else np.asarray(y).ravel()
    if labels is not None and len(labels) != len(hard):
        raise ValueError(f"plot_clusters: {len(hard)} assignments but {len(labels)} labels")
    sizes = np.bincount(hard, minlength=n_clusters)
    if labels is None:
        order = np.argsort(-sizes, kind="stable")
        fig = _new_figure((6.4, 4.0))
        _draw_sizes(fig.add_subplot(), sizes[order], order)
        fig.suptitle(title)
        return _save(fig, path)
    classes, label_ids = np.unique(labels, return_inverse=True)
    table = np.zeros((n_clusters, classes.size), dtype=np.int64)
    np.add.at(table, (hard, label_ids), 1)
    order = hungarian_order(table)
    fig = _new_figure((11.0, 5.6))
    heat_ax, size_ax = fig.subplots(1, 2, width_ratios=[2.2, 1])
    _draw_contingency(fig, heat_ax, table[order], order, classes)
    _draw_sizes(size_ax, sizes[order], order, horizontal=True)
    fig.suptitle(title)
    return _save(fig, path)


def hungarian_order(table: np.ndarray) -> np.ndarray:
    """Rows (clusters) of a cluster-by-label count ``table`` in the order of the best one-to-one
    matching to the columns (labels): matched clusters by their label, then the rest by size."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(table, maximize=True)
    matched = [int(r) for r in rows[np.argsort(cols)]]
    rest = [r for r in np.argsort(-table.sum(axis=1), kind="stable") if r not in set(matched)]
    return np.asarray(matched + [int(r) for r in rest], dtype=np.int64)


def divergence_of_rows(p: np.ndarray, q: np.ndarray, divergence: str) -> float:
    """``kl`` = KL(p || q), ``reverse_kl`` = KL(q || p), ``js`` = Jensen-Shannon, in nats, for
    one row each of p and q (inf where the divergence is)."""
    if divergence == "kl":
        return _kl(p, q)
    if divergence == "reverse_kl":
        return _kl(q, p)
    if divergence == "js":
        middle = (p + q) / 2
        return 0.5 * _kl(p, middle) + 0.5 * _kl(q, middle)
    raise ValueError(f"unknown divergence {divergence!r}")


def _new_figure(
    size: tuple[float, float], layout: Literal["constrained"] | None = "constrained"
) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


#: Space kept around the panels of the p/q grid and between their bands, in points (as
#: constrained layout's default pad).
GRID_PAD_PT = 3.0


def _place_grid(fig: Figure, grid: np.ndarray, header: Sequence[Artist]) -> None:
    """Position a grid of panels (rows sharing y) below the ``header`` artists (legend, title).

    Constrained layout measures every panel in an extra draw before the real one; the panels of
    a row here share their tick labels and y axis, so the first column's bands (y labels, x
    labels, title) measure each row. Panels keep one size; each row gets the bands it needs.
    """
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    pad = GRID_PAD_PT * fig.dpi / 72
    width, height = fig.bbox.width, fig.bbox.height
    first = grid[:, 0]
    left = max(ax.bbox.x0 - ax.yaxis.get_tightbbox(renderer).x0 for ax in first) + pad
    below = [ax.bbox.y0 - ax.xaxis.get_tightbbox(renderer).y0 + pad for ax in first]
    above = [ax.title.get_window_extent(renderer).y1 - ax.bbox.y1 + pad for ax in first]
    top = min(a.get_window_extent(renderer).y0 for a in header) - pad
    rows, cols = grid.shape
    gap = 3 * pad  # inner panels have only tick marks (3.5 pt) left of the axes
    panel_w = (width - left - pad - (cols - 1) * gap) / cols
    panel_h = (top - sum(below) - sum(above)) / rows
    for row in range(rows):
        top -= above[row] + panel_h
        for col in range(cols):
            x0 = left + col * (panel_w + gap)
            bounds = (x0 / width, top / height, panel_w / width, panel_h / height)
            grid[row, col].set_position(bounds)
        top -= below[row]


def _log_ticks_in_view(ax: Axes) -> None:
    """Fix a log y axis's ticks (shared by its row) to those in view: its locators also give a
    decade either side, and each of those ticks is built in every panel and never drawn."""
    if ax.get_yscale() != "log":
        return
    from matplotlib.ticker import FixedLocator

    low, high = ax.get_ylim()
    low, high = low * (1 - 1e-6), high * (1 + 1e-6)  # a tick on a limit (0.6 = 6e-1) stays
    axis = ax.yaxis
    # called after _place_grid: the major locator's decade stride depends on the panel height
    major = np.asarray(axis.get_major_locator()())
    minor = np.asarray(axis.get_minor_locator()())
    axis.set_major_locator(FixedLocator(major[(major >= low) & (major <= high)].tolist()))
    axis.set_minor_locator(FixedLocator(minor[(minor >= low) & (minor <= high)].tolist()))


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


def _visible_columns(shown: list[Snapshot], anchor: int, max_bars: int) -> np.ndarray:
    """The neighbours of ``anchor`` worth drawing: where p or q, in a shown epoch, reaches
    VISIBLE_SHARE of its row's largest value; at most ``max_bars``, the largest first."""
    p = np.stack([p_rows[anchor] for _, p_rows, _ in shown])
    q = np.stack([q_rows[anchor] for _, _, q_rows in shown])
    share = np.maximum(
        p / np.maximum(p.max(axis=1, keepdims=True), 1e-300),
        q / np.maximum(q.max(axis=1, keepdims=True), 1e-300),
    ).max(axis=0)
    peak = np.maximum(p.max(axis=0), q.max(axis=0))
    order = np.lexsort((-peak, -share))  # largest share first, then largest value
    visible = order[share[order] >= VISIBLE_SHARE][:max_bars]
    return visible if visible.size else order[:1]


def _log_scale_if_spread(
    axes: Sequence[Axes], shown: list[Snapshot], anchor: int, columns: np.ndarray
) -> None:
    """A log probability axis for the row when the drawn bars span more than LOG_SPAN (a
    Gaussian p on the anchor itself beside a cluster kernel's q spread over a whole cluster)."""
    values = np.concatenate(
        [np.concatenate([p[anchor, columns], q[anchor, columns]]) for _, p, q in shown]
    )
    positive = values[values > 0]
    if positive.size and positive.max() / positive.min() > LOG_SPAN:
        for ax in axes:
            ax.set_yscale("log")
            ax.set_ylim(max(positive.min() / 2, positive.max() * 1e-8), positive.max() * 2)


def _draw_pq_panel(ax: Axes, p: np.ndarray, q: np.ndarray, columns: np.ndarray) -> None:
    positions = np.arange(len(columns))
    ax.bar(positions - 0.2, p[columns], width=0.4, color="tab:blue", label="target p")
    ax.bar(positions + 0.2, q[columns], width=0.4, color="tab:orange", label="learned q")
    names = [str(j) for j in columns]
    ax.set_xticks(positions, names, fontsize=7, rotation=90 if len(names) > 8 else 0)
    ax.set_xlabel("neighbour j", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    left_out = p.size - len(columns)
    if left_out:
        rest = np.ones(p.size, dtype=bool)
        rest[columns] = False
        text = f"{left_out} others: p {p[rest].sum():.3f}, q {q[rest].sum():.3f}"
        ax.text(0.98, 0.97, text, transform=ax.transAxes, ha="right", va="top", fontsize=7)


def _hard_assignments(assignments: np.ndarray) -> tuple[np.ndarray, int]:
    values = np.asarray(assignments)
    if values.ndim == 2:
        if values.shape[0] == 0 or values.shape[1] == 0:
            raise ValueError(f"plot_clusters expects (N, C) assignments, got {values.shape}")
        return values.argmax(axis=1), int(values.shape[1])
    if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(
            "plot_clusters expects hard cluster ids (N,) of integers or soft assignments "
            f"(N, C), got {values.dtype} {values.shape}"
        )
    if values.min() < 0:
        raise ValueError(f"plot_clusters: cluster ids must be >= 0, got {values.min()}")
    return values.astype(np.int64), int(values.max()) + 1


def _draw_contingency(
    fig: Figure, ax: Axes, table: np.ndarray, clusters: np.ndarray, classes: np.ndarray
) -> None:
    image = ax.imshow(table, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label="samples")
    ax.set_xticks(np.arange(classes.size), [str(c) for c in classes], fontsize=8)
    ax.set_yticks(np.arange(len(clusters)), [str(c) for c in clusters], fontsize=8)
    ax.set_xlabel("label")
    ax.set_ylabel("cluster (Hungarian order)")
    if table.size <= 400:  # write the counts where they stay readable
        bright = table.max() * 0.6
        for (row, col), count in np.ndenumerate(table):
            colour = "black" if count > bright else "white"
            ax.text(col, row, str(count), ha="center", va="center", fontsize=6, color=colour)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(table, maximize=True)
    matched = int(table[rows, cols].sum())
    ax.set_title(f"clusters x labels: {matched} of {table.sum()} samples in matched pairs")


def _draw_sizes(
    ax: Axes, sizes: np.ndarray, clusters: np.ndarray, horizontal: bool = False
) -> None:
    positions = np.arange(len(sizes))
    names = [str(c) for c in clusters]
    if horizontal:
        ax.barh(positions, sizes, color="tab:blue")
        ax.set_yticks(positions, names, fontsize=8)
        ax.invert_yaxis()  # row j beside row j of the table
        ax.set_xlabel("samples")
    else:
        ax.bar(positions, sizes, color="tab:blue")
        ax.set_xticks(positions, names, fontsize=8)
        ax.set_xlabel("cluster")
        ax.set_ylabel("samples")
    empty = int((sizes == 0).sum())
    ax.set_title("cluster sizes" + (f" ({empty} empty)" if empty else ""))


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats over the entries where p > 0; inf where p > 0 = q."""
    support = p > 0
    if (q[support] <= 0).any():
        return float("inf")
    return float(np.sum(p[support] * np.log(p[support] / q[support])))
