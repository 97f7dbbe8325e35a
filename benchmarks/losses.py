"""Time and peak memory of the generated SimCLR / SupCon losses against other implementations.

    python benchmarks/losses.py                 # the full table (N = 512, 2048, 8192; 32768 blocks)
    python benchmarks/losses.py --sizes 512     # a quick run

Every measurement runs in its own process (so peak memory is that implementation's alone):
forward + backward on z = randn(N, 128) float32, torch.set_num_threads(2), the median of the
timed runs after a warm-up, then the median over three fresh processes. Peak memory is the growth
of the process's maximum resident set size over the inputs alone. Ratios are taken against the
minimal hand-written loss measured in the same run. The generated modules run with their
defaults (input validation on).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIM, TAU = 128, 0.5
# Timed runs per process after a warm-up (fewer where one run takes seconds), and processes per
# measurement: the reported value is the median over processes of each process's median.
REPEATS = {512: 25, 2048: 15, 8192: 5}
PROCESSES = 3
IMPLEMENTATIONS = {
    "ntxent": ["hand", "generated", "generated_blocks", "iconref", "pml"],
    "supcon": ["hand", "generated", "generated_blocks", "iconref", "pml"],
}
# pytorch-metric-learning's NTXentLoss builds O(N^3) memory: past this N it asks tens of GB.
PML_NTXENT_MAX_N = 512


def _load(stem: str) -> type:
    spec = importlib.util.spec_from_file_location(stem, ROOT / "generated" / f"{stem}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls: type = getattr(module, {"simclr": "SimCLR", "supcon": "SupCon"}[stem])
    return cls


def _make(task: str, impl: str, n: int):  # type: ignore[no-untyped-def]
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, DIM, generator=g)
    if task == "ntxent":
        labels = torch.arange(n // 2).repeat(2)
        partner = (torch.arange(n) + n // 2) % n
    else:
        labels = torch.randint(0, 10, (n,), generator=g)

    if impl == "hand":
        eye = torch.eye(n, dtype=torch.bool)

        def hand(z):  # type: ignore[no-untyped-def]
            zn = F.normalize(z, dim=1)
            s = zn @ zn.T / TAU
            if task == "ntxent":
                s.fill_diagonal_(float("-inf"))
                return F.cross_entropy(s, partner)
            # SupCon L_out, written as directly as it goes: mean log-softmax over positives
            log_prob = torch.log_softmax(s.masked_fill(eye, float("-inf")), dim=1)
            positives = (labels[:, None] == labels[None, :]) & ~eye
            count = positives.sum(1)
            rows = -torch.where(positives, log_prob, 0.0).sum(1) / count.clamp_min(1)
            return rows[count > 0].mean()

        return z, hand
    if impl in ("generated", "generated_blocks"):
        cls = _load("simclr" if task == "ntxent" else "supcon")
        block = 1024 if impl == "generated_blocks" else None
        loss = cls(temperature=TAU, block_size=block)
        key = "index" if task == "ntxent" else "y"
        return z, lambda z: loss(z, **{key: labels})
    if impl == "iconref":
        # the I-Con reference form: a dense p built from the labels, times a masked log q
        def iconref(z):  # type: ignore[no-untyped-def]
            eye = torch.eye(n, dtype=torch.bool)
            p = ((labels[:, None] == labels[None, :]) & ~eye).float()
            p = p / p.sum(1, keepdim=True).clamp_min(1)
            zn = F.normalize(z, dim=1)
            log_q = torch.log_softmax((zn @ zn.T / TAU).masked_fill(eye, float("-inf")), 1)
            rows = -(p * log_q.masked_fill(eye, 0.0)).sum(1)
            return rows[p.sum(1) > 0].mean()

        return z, iconref
    if impl == "pml":
        from pytorch_metric_learning import losses

        fn = (
            losses.NTXentLoss(temperature=TAU)
            if task == "ntxent"
            else losses.SupConLoss(temperature=TAU)
        )
        return z, lambda z: fn(z, labels)
    raise ValueError(impl)


def measure_one(task: str, impl: str, n: int) -> dict[str, float]:
    import torch

    torch.set_num_threads(2)
    z0, fn = _make(task, impl, n)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for i in range(REPEATS.get(n, 3) + 1):
        z = z0.clone().requires_grad_(True)
        start = time.perf_counter()
        fn(z).backward()
        elapsed = time.perf_counter() - start
        if i:  # the first run is the warm-up
            times.append(elapsed)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": statistics.median(times), "peak_mib": (peak - base) / 1024}


def run(task: str, impl: str, n: int, timeout: float) -> dict[str, float] | str:
    """The median over PROCESSES fresh processes (1 for the slow block-mode size)."""
    if impl == "pml" and task == "ntxent" and n > PML_NTXENT_MAX_N:
        return "skipped (O(N^3) memory)"
    results = []
    for _ in range(PROCESSES if n in REPEATS else 1):
        res = _run_once(task, impl, n, timeout)
        if isinstance(res, str):
            return res
        results.append(res)
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def _run_once(task: str, impl: str, n: int, timeout: float) -> dict[str, float] | str:
    cmd = [sys.executable, __file__, "--one", task, impl, str(n)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "timed out"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["failed"])[-1]
        return f"failed: {last[:60]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--tasks", nargs="+", default=["ntxent", "supcon"])
    parser.add_argument("--block-n", type=int, default=32768, help="N for block mode (0: skip)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--one", nargs=3, metavar=("TASK", "IMPL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        task, impl, n = args.one
        print(json.dumps(measure_one(task, impl, int(n))))
        return
    print(f"forward + backward, z = randn(N, {DIM}) float32, 2 threads, median of medians")
    print("| task | N | implementation | time (ms) | peak (MiB) | time / hand | memory / hand |")
    print("|---|---|---|---|---|---|---|")
    for task in args.tasks:
        for n in args.sizes:
            results = {impl: run(task, impl, n, args.timeout) for impl in IMPLEMENTATIONS[task]}
            hand = results["hand"]
            for impl, res in results.items():
                if isinstance(res, str):
                    print(f"| {task} | {n} | {impl} | {res} | | | |")
                    continue
                ratio_t = ratio_m = ""
                if isinstance(hand, dict):
                    ratio_t = f"{res['seconds'] / hand['seconds']:.2f}"
                    ratio_m = f"{res['peak_mib'] / max(hand['peak_mib'], 1e-9):.2f}"
                print(
                    f"| {task} | {n} | {impl} | {res['seconds'] * 1e3:.1f} | "
                    f"{res['peak_mib']:.0f} | {ratio_t} | {ratio_m} |",
                    flush=True,
                )
        if args.block_n:
            res = run(task, "generated_blocks", args.block_n, args.timeout)
            shown = (
                res
                if isinstance(res, str)
                else (f"{res['seconds'] * 1e3:.0f} ms, peak {res['peak_mib']:.0f} MiB")
            )
            print(f"\n{task} block mode at N = {args.block_n}: {shown}\n", flush=True)


if __name__ == "__main__":
    main()
