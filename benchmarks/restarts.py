"""Clustering restarts on digits: one after another, side by side, and scikit-learn's KMeans.

    python benchmarks/restarts.py                       # kmeans.icon, 10 restarts, once each
    python benchmarks/restarts.py --repeats 3 --threads 1 --spec kmeans

In one process, on scikit-learn's digits (1,797 x 64, pixels scaled as ``icon-dsl train`` reads
them): ``icon_dsl.train.runtime.train(specs/<spec>.icon, restarts=R)`` with the starts trained one
after another (``side_by_side=False``) and side by side (the default), and scikit-learn's
KMeans(10, n_init=R, random_state=0). Every row is timed around its call (for icon-dsl: compiling
the spec, the R starts, choosing the kept one and the metrics; the spec is compiled once before,
so imports are not counted), and scored by the NMI of its cluster assignments against the digit
labels. The rows run in turn, ``--repeats`` times; the table shows the median time and each
row's ratio to the sequential row and to scikit-learn's. The machine may be shared: compare the
ratios of one run only.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _icon(spec: Path, restarts: int, side_by_side: bool) -> Callable[[], float]:
    from icon_dsl.train.runtime import train

    def run() -> float:
        result = train(
            spec, restarts=restarts, side_by_side=side_by_side, out=False, progress=False
        )
        return float(result.metrics["nmi"])

    return run


def _sklearn(x: np.ndarray, y: np.ndarray, restarts: int) -> Callable[[], float]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    def run() -> float:
        labels = KMeans(10, n_init=restarts, random_state=0).fit_predict(x)
        return float(normalized_mutual_info_score(y, labels))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="kmeans", help="a clustering spec under specs/")
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()

    import torch

    from icon_dsl.train.data import load_dataset

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    spec = ROOT / "specs" / f"{args.spec}.icon"
    digits = load_dataset(None, None)
    assert digits.y is not None
    rows: dict[str, Callable[[], float]] = {
        "icon-dsl, one after another": _icon(spec, args.restarts, side_by_side=False),
        "icon-dsl, side by side": _icon(spec, args.restarts, side_by_side=True),
        f"scikit-learn KMeans(n_init={args.restarts})": _sklearn(digits.x, digits.y, args.restarts),
    }
    from icon_dsl.train.runtime import train

    train(spec, restarts=2, epochs=1, out=False, progress=False)  # imports, first calls
    times: dict[str, list[float]] = {name: [] for name in rows}
    nmis: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, run in rows.items():
            started = time.perf_counter()
            nmis[name].append(run())
            times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in times.items()}
    sequential, reference = list(median.values())[0], list(median.values())[-1]
    print(
        f"{args.spec}.icon on digits, {args.restarts} restarts, {args.repeats} repeat(s), "
        f"torch threads {torch.get_num_threads()}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )
    print(f"{'row':36} {'time s':>8} {'vs seq':>7} {'vs sklearn':>10} {'NMI':>7}")
    for name in rows:
        nmi = statistics.median(nmis[name])
        print(
            f"{name:36} {median[name]:8.2f} {median[name] / sequential:7.2f} "
            f"{median[name] / reference:10.1f} {nmi:7.4f}"
        )


if __name__ == "__main__":
    main()
