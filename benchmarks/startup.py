"""Benchmark: how fast the compiler's commands start (the target: under 0.5 s each).

Run: `python benchmarks/startup.py [--repeat N]`. Each command runs in a fresh process N times
(default 5); the best wall and CPU times are printed, with ratios against two baselines run in
the same session: an empty interpreter (`python -c pass`) and `import sympy`, the heaviest
dependency the compiler needs, plus the import of every dependency together (the floor no
command can go below). The commands use a fresh disk cache (`ICON_DSL_CACHE_DIR`): the first run
fills it and the best run reads it; `compile, no cache` runs with the cache off. On a shared
machine the CPU time is the stable number. The commands must not import torch;
tests/test_startup.py checks that as a matter of meaning.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = "specs/tsne.icon"

BASELINES = {
    "python -c pass": ["-c", "pass"],
    "import sympy": ["-c", "import sympy"],
    "import dependencies": ["-c", "import sympy, networkx, lark, jinja2"],
}
COMMANDS = {
    "icon-dsl check": ["-m", "icon_dsl.cli", "check", SPEC],
    "icon-dsl compile": ["-m", "icon_dsl.cli", "compile", SPEC, "-o", "{tmp}"],
    "icon-dsl explain": ["-m", "icon_dsl.cli", "explain", SPEC],
    "compile, no cache": ["-m", "icon_dsl.cli", "compile", SPEC, "-o", "{tmp}"],
}


def best_times(args: list[str], repeat: int, cache: str) -> tuple[float, float]:
    """The lowest wall and CPU seconds of `repeat` fresh runs of `python <args>`."""
    walls, cpus = [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env["ICON_DSL_CACHE_DIR"] = cache
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, capture_output=True, cwd=ROOT, env=env)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh runs per command")
    opts = parser.parse_args()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "icon-dsl-startup"
    cache = tempfile.mkdtemp(prefix="icon-dsl-startup-cache-")
    rows = {name: best_times(args, opts.repeat, cache) for name, args in BASELINES.items()}
    for name, args in COMMANDS.items():
        where = "off" if "no cache" in name else cache
        rows[name] = best_times([a.format(tmp=tmp) for a in args], opts.repeat, where)
    empty, sympy = rows["python -c pass"], rows["import sympy"]
    print(f"best of {opts.repeat} fresh processes, spec {SPEC}")
    print(f"{'':20} {'wall s':>7} {'CPU s':>7} {'/ empty':>8} {'/ sympy':>8}  (CPU ratios)")
    for name, (wall, cpu) in rows.items():
        print(f"{name:20} {wall:7.3f} {cpu:7.3f} {cpu / empty[1]:8.1f} {cpu / sympy[1]:8.2f}")
    slow = [name for name in COMMANDS if rows[name][1] >= 0.5 and "no cache" not in name]
    print("target (< 0.5 s CPU each):", "met" if not slow else "missed by " + ", ".join(slow))


if __name__ == "__main__":
    main()
