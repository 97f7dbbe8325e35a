"""Process-wide settings that ``icon-dsl train`` makes when the process is its own.

``icon_dsl.cli.console_main`` (the console script and ``python -m icon_dsl.cli``) runs one
command and exits, so the train command may set the whole process up for a run (and its helper
process, helper.py, its own). ``main`` called from a program (a test, a notebook) leaves the
process as it is: both settings below would stay in force for everything else that program does.

- ``keep_freed_memory``: glibc's malloc keeps freed memory for the next epoch;
- ``libraries_frozen``: the cyclic garbage collector leaves the imported libraries alone.

``training_process`` makes both.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt's parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: The largest mmap threshold glibc accepts on 64-bit (its dynamic threshold stops there too).
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2**30


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse; True where it did (glibc only).

    A full-batch epoch on digits makes about 20 temporaries of N x N floats, 13 MB each at
    N = 1,797. glibc serves blocks of that size from its heap once one has been freed, but it
    hands the heap's free top back to the kernel whenever that exceeds twice the largest such
    block, and the next epoch faults the pages in again: 280,000-620,000 page faults and
    0.5-1.0 s of system time in the 60 epochs of a digits run. A fixed mmap threshold and a trim
    threshold of 1 GiB keep the pages (about 100 faults in those epochs). Other C libraries
    (macOS, Windows, musl) keep their own ways.
    """
    if "CS_GNU_LIBC_VERSION" not in getattr(os, "confstr_names", {}):
        return False
    import ctypes

    libc = ctypes.CDLL(None)
    return bool(
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


@contextmanager
def libraries_frozen() -> Iterator[None]:
    """Import libraries inside: the collector is off meanwhile, and afterwards what the imports
    made is frozen out of its passes (``gc.freeze``).

    The libraries make objects that live until the process ends: about 430,000 for torch,
    torch._dynamo and the runtime in the run's process, 240,000 for scikit-learn in the helper.
    The collector's full passes while they are made, and every full pass after, walk all of
    them and free nothing (about 0.7 s of CPU in a one-process run on digits); the run's own
    objects are collected as before.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


@contextmanager
def training_process() -> Iterator[None]:
    """Set the process up for a training run; import the training stack inside."""
    keep_freed_memory()
    with libraries_frozen():
        yield
