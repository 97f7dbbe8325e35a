"""What a training run leaves behind, and the metrics table it prints.

``write_outputs`` fills the run folder:

    metrics.json        the metrics (keys of TrainResult.metrics), sorted
    run.json            spec, class, seed, data, the plan (batching, epochs, lr, hypers), the
                        number of processes and the loss of every epoch (of the kept start,
                        with every start's final divergence under "starts" when there are
                        restarts, and the kept start, numbered from 1), and "path": which
                        way it trained (mini-batches, full batch, or a whole-data path)
    spec.icon           the spec's source text
    weights.pt          {"mapper": state_dict, "loss": state_dict} (prototypes live in "loss")
    embedding.npy       the embedding (or cluster assignments) of the whole data set, (N, dim)
    embedding.png       a scatter of it (2-D directly, else PCA to 2-D), coloured by label
                        (not for cluster specs, which get clusters.png instead)
    clusters.png        cluster specs: the cluster-by-label table in Hungarian order, and the
                        cluster sizes
    loss.png            the loss per epoch
    neighbours.png      p(.|i) and q(.|i) for a few anchors at several epochs, titled with
                        the spec's divergence
    checkpoint.pt       the last per-epoch checkpoint (for --resume)

Every file is written to a temporary name and renamed, so a folder never holds a torn file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from icon_dsl.train import plots

if TYPE_CHECKING:
    from icon_dsl.train.helper import Helper
    from icon_dsl.train.loop import Run
    from icon_dsl.train.plan import Plan

METRIC_ORDER = (
    "knn_accuracy",
    "linear_probe_accuracy",
    "cluster_accuracy",
    "nmi",
    "ari",
    "trustworthiness",
    "kl",
    "reverse_kl",
    "js",
    "wall_time_s",
)


def hand_over_neighbours(helper: Helper, out_dir: Path | None, run: Run) -> Helper | None:
    """``helper``, drawing neighbours.png from now on (in its second process, if it has one);
    None when there is no output folder or snapshot."""
    if out_dir is None or not run.snapshots:
        return None
    args, kwargs = _neighbours_picture(out_dir, run)
    helper.start("icon_dsl.train.plots:plot_neighbour_distributions", *args, **kwargs)
    return helper


def write_outputs(
    out_dir: Path,
    run: Run,
    embedding: np.ndarray,
    metrics: dict[str, float],
    painting: Helper | None = None,
) -> None:
    """Write every file listed in the module docstring into ``out_dir``; ``painting``: the
    helper that ``hand_over_neighbours`` gave neighbours.png to (waited for last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    info = {
        "spec": run.compiled.ir.source.name,
        "class": run.plan.class_name,
        "known_as": run.compiled.known_as,
        "divergence": run.divergence,
        "seed": run.seed,
        "device": str(run.device),
        "data": {
            "name": run.dataset.name,
            "n_samples": run.dataset.n_samples,
            "n_features": run.dataset.n_features,
            "labels": run.dataset.y is not None,
        },
        "plan": asdict(run.plan),
        "processes": run.world,
        "path": training_path(run.plan),
        "losses": list(run.losses),
    }
    if run.plan.restarts > 1:  # the final KL of every start; losses are the kept start's
        # starts are numbered from 1, as in the metrics table and the progress bar
        info["starts"] = {
            "final_divergence": list(run.start_kls),
            "kept": run.kept_start + 1,
            "side_by_side": run.side is not None,
            # successive halving: start -> the epoch it stopped at (its final_divergence is
            # its score then)
            "stopped_early": {
                start + 1: epoch for start, (epoch, _) in sorted(run.side.stopped.items())
            }
            if run.side is not None
            else {},
            "chosen_by": (
                "the whole-data loss (fixed draws and views)"
                if run.plan.cluster
                else "the final divergence on the evaluation batch"
            ),
        }
    _write_text(out_dir / "run.json", json.dumps(info, indent=2, default=str) + "\n")
    _write_text(out_dir / "spec.icon", run.compiled.ir.source.text)
    weights = {"mapper": run.mapper.state_dict(), "loss": run.loss.state_dict()}
    _atomic(out_dir / "weights.pt", lambda path: torch.save(weights, path))
    _atomic(out_dir / "embedding.npy", lambda path: np.save(path, embedding))
    title = f"{run.plan.name}: {run.plan.class_name} on {run.dataset.name}"
    if run.plan.softmax:  # cluster assignments: sizes and clusters against labels
        plots.plot_clusters(embedding, run.dataset.y, out_dir / "clusters.png", title)
    else:
        plots.plot_embedding(embedding, run.dataset.y, out_dir / "embedding.png", title)
    if run.losses:
        divergence = f"{run.divergence} = {plots.DIVERGENCE_TITLES[run.divergence]}"
        loss_title = f"{run.plan.name}: training loss ({divergence})"
        plots.plot_loss(run.losses, out_dir / "loss.png", title=loss_title)
    if painting is not None:
        painting.wait()
    elif run.snapshots:
        args, kwargs = _neighbours_picture(out_dir, run)
        plots.plot_neighbour_distributions(*args, **kwargs)


def _neighbours_picture(out_dir: Path, run: Run) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of ``plots.plot_neighbour_distributions`` for the run's neighbours.png."""
    path = out_dir / "neighbours.png"
    return (run.snapshots, run.anchor_ids(), path), {"divergence": run.divergence}


def training_path(plan: Plan) -> str:
    """Which way the run trained (run.json's "path")."""
    if plan.sparse:
        return f"whole data every epoch, sparse p (sparse.py), normaliser {plan.normaliser}"
    if plan.cluster:
        return f"whole data every epoch, cluster kernel (cluster.py), {plan.normaliser} pair sums"
    if plan.full_batch:
        return "full batch, the generated forward"
    return f"mini-batches of {plan.batch_size}, the generated forward"


def format_metrics(
    name: str,
    metrics: dict[str, float],
    out_dir: Path | None,
    kept: tuple[int, int] | None = None,
    divergence: str = "kl",
) -> str:
    """The table printed at the end of a run: one metric a line, in a fixed order; ``kept`` =
    (start, restarts) adds which start the run kept (the lowest final ``divergence``)."""
    keys = [k for k in METRIC_ORDER if k in metrics] + sorted(set(metrics) - set(METRIC_ORDER))
    width = max(len(k) for k in keys) if keys else 6
    lines = [f"{name}: results", f"  {'metric'.ljust(width)}  value", f"  {'-' * width}  ------"]
    for key in keys:
        value = metrics[key]
        shown = f"{value:.2f}" if key == "wall_time_s" else f"{value:.4f}"
        lines.append(f"  {key.ljust(width)}  {shown}")
    if kept is not None:
        lines.append(f"  kept start {kept[0] + 1} of {kept[1]} (the lowest final {divergence})")
    if out_dir is not None:
        lines.append(f"  outputs in {out_dir}")
    return "\n".join(lines)


def _write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _atomic(path: Path, write: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".npy":
        tmp = path.with_name(f".{path.stem}.tmp.npy")  # np.save appends .npy otherwise
    write(tmp)  # type: ignore[operator]
    os.replace(tmp, path)
