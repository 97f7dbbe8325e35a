"""Peak memory and step time of a generated forward: dense, row blocks, sampled normaliser.

    python benchmarks/blocks.py                      # t-SNE, N = 4096 and 8192, 2 threads
    python benchmarks/blocks.py --spec specs/kmeans.icon --sizes 16384 --threads 1
    python benchmarks/blocks.py --forms exact sampled --sizes 20000

`icon-dsl compile SPEC` (dense: N x N), `icon-dsl compile --normaliser exact SPEC` (row
blocks of 1,024, each recomputed in the backward) and `--normaliser sampled` (p kept on each
row's nearest neighbours, q's normaliser from 64 uniform columns a row) on the same batch of N points (64 features,
10 Gaussian blobs, float32; the spec's own mapper, seeded). Each form runs in a fresh process: two training
steps (forward + backward; the dense module computes p in the first and reuses it in the second,
the block module keeps only p's perplexity searches and recomputes the rest), the peak resident
memory above the process's size before the first step, and the loss of both steps, which must
agree between dense and exact (sampled's is an estimate). Ratios are against dense.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import importlib.util, json, resource, sys, time
import torch
from torch import nn
path, n, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
spec = importlib.util.spec_from_file_location("blocks_module", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
cls = next(v for k, v in vars(module).items() if not k.startswith("_") and hasattr(v, "INPUTS"))
g = torch.Generator().manual_seed(0)
centres = torch.randn(10, 64, generator=g) * 4
x = centres[torch.arange(n) % 10] + torch.randn(n, 64, generator=g)
torch.manual_seed(0)
mapper = cls.build_mapper(64, num_samples=n)
mapper_input = torch.arange(n) if cls.MAPPER_INPUT == "index" else x
loss = cls()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times, losses = [], []
for _ in range(2):
    start = time.perf_counter()
    value = loss(mapper(mapper_input), x=x)
    value.backward()
    times.append(time.perf_counter() - start)
    losses.append(float(value.detach()))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"times": times, "losses": losses, "peak_mib": (peak - before) / 1024}))
"""


def run(path: Path, n: int, threads: int) -> dict:
    # a fixed mmap threshold: glibc's moving one serves freed 16 MiB buffers from a heap that is
    # not given back, and the peak would count memory no tensor holds any more
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(n), str(threads)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--spec", default="specs/tsne.icon", help="a spec whose input is x")
    parser.add_argument(
        "--forms",
        nargs="+",
        choices=["dense", "exact", "sampled"],
        default=["dense", "exact", "sampled"],
        help="the compiler's --normaliser values to run (sampled where the spec takes it)",
    )
    args = parser.parse_args(argv)
    import icon_dsl
    from icon_dsl import SpecError

    spec = ROOT / args.spec
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for form in args.forms:
            try:
                source = icon_dsl.compile(spec, normaliser=form).source
            except SpecError:
                print(f"{args.spec} does not take --normaliser {form}: left out")
                continue
            paths[form] = Path(folder) / f"{form}.py"
            paths[form].write_text(source)
        print("| N | form | step 1 (s) | step 2 (s) | peak memory above start (MiB) | loss |")
        print("|---|---|---|---|---|---|")
        for n in args.sizes:
            results = {form: run(path, n, args.threads) for form, path in paths.items()}
            for form, r in results.items():
                t1, t2 = r["times"]
                print(
                    f"| {n:,} | {form} | {t1:.2f} | {t2:.2f} | {r['peak_mib']:,.0f} | "
                    f"{r['losses'][1]:.6f} |"
                )
            for form, r in results.items():
                if form == "dense" or "dense" not in results:
                    continue
                dense = results["dense"]
                print(
                    f"| {n:,} | {form} / dense | {r['times'][0] / dense['times'][0]:.2f}x | "
                    f"{r['times'][1] / dense['times'][1]:.2f}x | "
                    f"{r['peak_mib'] / dense['peak_mib']:.2f}x | "
                    f"{abs(r['losses'][1] / dense['losses'][1] - 1):.1e} apart |"
                )


if __name__ == "__main__":
    main()
