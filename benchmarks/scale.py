"""icon-dsl train at 20,000-70,000 points beside openTSNE and scikit-learn, in one run.

    python benchmarks/scale.py                          # every row (long: see docs/performance.md)
    python benchmarks/scale.py --only tsne-digits20k
    python benchmarks/scale.py --only tsne-mnist1d kmeans-mnist1d --threads 2

Data, made offline and cached under --cache (default: the system's temp folder):

- ``digits20k``: scikit-learn's 1,797 digits followed by redraws of random digits, each through a
  small random affine map (rotation up to 0.2 rad, scale 0.9-1.1 per axis, shear up to 0.15,
  shift up to half a pixel; bilinear), 20,000 x 64, labels kept;
- ``mnist1d``: ``mnist1d.data.make_dataset`` with num_samples=70,000 and train_split=1.0 (every
  sample in the training part), 70,000 x 40. Never ``get_dataset``, which downloads.

Rows (each method runs in its own process, with --threads torch / OpenMP threads, so that its
peak memory is its own):

- ``tsne-*``: ``icon-dsl train specs/tsne.icon`` (the runtime's defaults) against openTSNE's TSNE
  (defaults, n_jobs=--threads, random_state=0);
- ``kmeans-*``: ``icon-dsl train specs/kmeans.icon`` against scikit-learn's KMeans(10,
  n_init=10, random_state=0);
- ``process-digits``: the whole ``icon-dsl train specs/tsne.icon`` command on digits (start,
  imports, training, metrics, pictures) against a process that imports scikit-learn and runs
  its TSNE on digits.

Wall time: icon-dsl's ``wall_time_s`` (compiling the spec, neighbours, training) and the
reference's fit, each timed inside its process; for ``process-*`` the whole process from
outside. Peak memory: the process's maximum resident set (ru_maxrss), interpreter and imports
included. Quality, computed here for both embeddings alike: trustworthiness(10) on a fixed
3,000-point sample (seed 0), 10-NN accuracy (5-fold, icon_dsl.train.metrics.knn_accuracy), and NMI
of the cluster assignments. The machine is shared: compare the ratios of one run only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
ROWS = ("tsne-digits20k", "tsne-mnist1d", "kmeans-mnist1d", "process-digits")
TRUST_SAMPLE = 3000


# -- data -------------------------------------------------------------------------------------
def digits_redrawn(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The digits, then redraws of random digits through small random affine maps."""
    from scipy.ndimage import affine_transform
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images, digits.target
    rng = np.random.default_rng(seed)
    picks = np.concatenate([np.arange(len(labels)), rng.integers(0, len(labels), n - len(labels))])
    out = np.empty((n, 64), np.float32)
    centre = np.array([3.5, 3.5])
    for row, i in enumerate(picks):
        if row < len(labels):
            out[row] = images[i].ravel()
            continue
        angle, shear = rng.uniform(-0.2, 0.2), rng.uniform(-0.15, 0.15)
        scale = rng.uniform(0.9, 1.1, 2)
        c, s = np.cos(angle), np.sin(angle)
        matrix = np.array([[c, -s], [s, c]]) @ np.array([[1, shear], [0, 1]]) @ np.diag(1 / scale)
        offset = centre - matrix @ centre + rng.uniform(-0.5, 0.5, 2)
        out[row] = affine_transform(images[i], matrix, offset=offset, order=1).ravel()
    return out, labels[picks]


def mnist1d(n: int = 70_000) -> tuple[np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split = n, 1.0
    data = make_dataset(args)  # generated here; nothing is downloaded
    return data["x"].astype(np.float32), data["y"].astype(np.int64)


def dataset(name: str, cache: Path) -> Path:
    path = cache / f"icon-dsl-scale-{name}.npz"
    if not path.exists():
        x, y = digits_redrawn() if name == "digits20k" else mnist1d()
        np.savez(path, x=x, y=y)
    return path


# -- one method in its own process -------------------------------------------------------------
def child(method: str, data: Path, out: Path, threads: int) -> None:
    import resource

    import torch

    torch.set_num_threads(threads)
    arrays = np.load(data)
    x, y = arrays["x"], arrays["y"]
    started = time.perf_counter()
    if method == "opentsne":
        from openTSNE import TSNE

        result = np.asarray(TSNE(n_jobs=threads, random_state=0).fit(x))
        wall = time.perf_counter() - started
    elif method == "sklearn-kmeans":
        from sklearn.cluster import KMeans

        result = KMeans(10, n_init=10, random_state=0).fit(x).labels_
        wall = time.perf_counter() - started
    else:
        sys.path.insert(0, str(ROOT))
        from icon_dsl.train.runtime import train

        spec = SPECS / ("tsne.icon" if method == "icon-tsne" else "kmeans.icon")
        trained = train(spec, data=(x, y), out=False, progress=True)
        result, wall = trained.embedding, trained.metrics["wall_time_s"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    np.savez(out, result=result, wall=wall, peak=peak)


def run_child(method: str, data: Path, threads: int, cache: Path) -> dict[str, object]:
    out = cache / f"icon-dsl-scale-{method}-{data.stem}.npz"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, __file__, "--child", method, str(data), str(out), str(threads)]
    subprocess.run(command, check=True, env=env)
    saved = np.load(out)
    return {"result": saved["result"], "wall": float(saved["wall"]), "peak": float(saved["peak"])}


# -- rows -------------------------------------------------------------------------------------
def embedding_row(name: str, data: Path, threads: int, cache: Path) -> list[dict[str, object]]:
    from icon_dsl.train.metrics import knn_accuracy, trustworthiness

    arrays = np.load(data)
    x, y = arrays["x"], arrays["y"]
    sample = np.random.default_rng(0).choice(len(x), min(TRUST_SAMPLE, len(x)), replace=False)
    rows = []
    for method in ("opentsne", "icon-tsne"):
        found = run_child(method, data, threads, cache)
        emb = np.asarray(found["result"], dtype=np.float64)
        rows.append(
            {
                "row": name,
                "method": method,
                "wall_s": found["wall"],
                "peak_mib": found["peak"],
                "trust": trustworthiness(x[sample], emb[sample]),
                "knn": knn_accuracy(emb, y),
            }
        )
    return rows


def cluster_row(name: str, data: Path, threads: int, cache: Path) -> list[dict[str, object]]:
    from icon_dsl.train.metrics import nmi

    y = np.load(data)["y"]
    rows = []
    for method in ("sklearn-kmeans", "icon-kmeans"):
        found = run_child(method, data, threads, cache)
        labels = np.asarray(found["result"])
        labels = labels.argmax(1) if labels.ndim == 2 else labels
        rows.append(
            {
                "row": name,
                "method": method,
                "wall_s": found["wall"],
                "peak_mib": found["peak"],
                "nmi": nmi(y, labels),
            }
        )
    return rows


SKLEARN_TSNE = """
import time
started = time.perf_counter()
from sklearn.datasets import load_digits
from sklearn.manifold import TSNE
x = load_digits().data
TSNE(random_state=0).fit_transform(x)
"""


def process_row(threads: int, cache: Path) -> list[dict[str, object]]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    rows = []
    commands = {
        "sklearn-tsne-process": [sys.executable, "-c", SKLEARN_TSNE],
        "icon-dsl-train-process": [
            sys.executable,
            "-m",
            "icon_dsl.cli",
            "train",
            str(SPECS / "tsne.icon"),
            "--quiet",
            "--out",
            str(Path(tempfile.mkdtemp(dir=cache))),
        ],
    }
    for method, command in commands.items():
        started = time.perf_counter()
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        rows.append(
            {"row": "process-digits", "method": method, "wall_s": time.perf_counter() - started}
        )
    return rows


def format_rows(rows: list[dict[str, object]]) -> str:
    lines = [
        "| row | method | wall s | peak MiB | trustworthiness | 10-NN acc | NMI |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            f"{r[k]:.3f}" if isinstance(r.get(k), float) and k != "wall_s" else str(r.get(k, "-"))
            for k in ("trust", "knn", "nmi")
        ]
        peak = f"{r['peak_mib']:.0f}" if "peak_mib" in r else "-"
        lines.append(
            f"| {r['row']} | {r['method']} | {r['wall_s']:.1f} | {peak} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def ratios(rows: list[dict[str, object]]) -> list[str]:
    """Ours against the reference of the same row, with the targets."""
    out = []
    by_row: dict[str, list[dict[str, object]]] = {}
    for r in rows:
        by_row.setdefault(str(r["row"]), []).append(r)
    for name, (ref, ours) in by_row.items():
        time_ratio = float(ours["wall_s"]) / float(ref["wall_s"])  # type: ignore[arg-type]
        if name.startswith("tsne"):
            ok = (
                float(ours["knn"]) >= float(ref["knn"]) - 0.01  # type: ignore[arg-type]
                and float(ours["trust"]) >= float(ref["trust"]) - 0.01  # type: ignore[arg-type]
                and time_ratio <= 1.0
                and float(ours["peak_mib"]) < 2048  # type: ignore[arg-type]
            )
            out.append(
                f"{name}: time {time_ratio:.2f}x openTSNE, 10-NN {float(ours['knn']) - float(ref['knn']):+.3f},"  # type: ignore[arg-type]
                f" trustworthiness {float(ours['trust']) - float(ref['trust']):+.3f},"  # type: ignore[arg-type]
                f" peak {float(ours['peak_mib']):.0f} MiB: {'met' if ok else 'NOT met'}"  # type: ignore[arg-type]
            )
        elif name.startswith("kmeans"):
            delta = float(ours["nmi"]) - float(ref["nmi"])  # type: ignore[arg-type]
            ok = delta >= -0.02 and time_ratio <= 3.0
            out.append(
                f"{name}: time {time_ratio:.2f}x KMeans(n_init=10), NMI {delta:+.3f}: "
                f"{'met' if ok else 'NOT met'}"
            )
        else:
            out.append(
                f"{name}: {time_ratio:.2f}x the scikit-learn process: "
                f"{'met' if time_ratio <= 1.0 else 'NOT met'}"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=ROWS, default=list(ROWS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        method, data, out, threads = args.child
        child(method, Path(data), Path(out), int(threads))
        return 0
    sys.path.insert(0, str(ROOT))
    rows: list[dict[str, object]] = []
    for name in args.only:
        print(f"running {name} ...", flush=True)
        if name == "process-digits":
            rows += process_row(args.threads, args.cache)
        elif name.startswith("tsne"):
            data = dataset("digits20k" if name.endswith("20k") else "mnist1d", args.cache)
            rows += embedding_row(name, data, args.threads, args.cache)
        else:
            rows += cluster_row(name, dataset("mnist1d", args.cache), args.threads, args.cache)
        print(format_rows(rows), flush=True)
    print()
    print(format_rows(rows))
    print()
    print("\n".join(ratios(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
