"""Benchmark: listing the default enumeration space (the issue's bound: under 10 s on one core).

Run: `python benchmarks/enumeration.py`. Prints the import time, the median of three listings in
one process (wall and CPU), and the wall time of the whole command `icon-dsl enumerate --format
json` in a fresh process, pinned to one core where `taskset` exists (wall and CPU: on a
shared machine the CPU time is the stable number), twice: with an empty probe cache, then with
the outcomes the first run stored (`icon_dsl.enumeration.cache`).
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    start = time.perf_counter()
    from icon_dsl.enumeration import enumerate_methods

    print(f"import: {time.perf_counter() - start:.2f} s")
    walls, cpus = [], []
    for _ in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        cands = enumerate_methods()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    print(
        f"enumerate_methods(): {len(cands)} candidates, median {statistics.median(walls):.2f} s "
        f"wall, {statistics.median(cpus):.2f} s CPU"
    )
    cmd = [sys.executable, "-m", "icon_dsl.cli", "enumerate", "--format", "json"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "ICON_DSL_CACHE_DIR": cache}
        for label in ("cold: probes run", "warm: probe outcomes from the disk cache"):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            wall = time.perf_counter() - wall
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            print(
                f"icon-dsl enumerate --format json (fresh process, one core, {label}): "
                f"{wall:.2f} s wall, {cpu:.2f} s CPU"
            )


if __name__ == "__main__":
    main()
