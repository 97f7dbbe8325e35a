"""Arguments of ``train`` checked before anything is trained: the seed, the device and the output
folder. Each problem is a UsageError naming the argument and the value; files a run would
overwrite are a TrainNote.
"""

from __future__ import annotations

import operator
import os
import warnings
from pathlib import Path

import torch

from icon_dsl.train.checkpoint import CHECKPOINT_NAME
from icon_dsl.train.errors import TrainNote, UsageError

#: Seeds are integers in [0, SEED_LIMIT): torch's generators take 64-bit seeds.
SEED_LIMIT = 2**63
#: The device types training runs on.
DEVICE_TYPES = ("cpu", "cuda", "mps")
#: The files a run writes into its folder (report.py writes them; see its docstring).
OUTPUT_FILES = (
    "metrics.json",
    "run.json",
    "spec.icon",
    "weights.pt",
    "embedding.npy",
    "embedding.png",
    "loss.png",
    "neighbours.png",
    CHECKPOINT_NAME,
)


def seed(value: object) -> int:
    """``value`` as a seed; UsageError unless it is an integer in [0, 2^63)."""
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise UsageError(f"seed must be an integer, got {value!r}") from None
    if isinstance(value, bool) or not 0 <= number < SEED_LIMIT:
        raise UsageError(f"seed must be an integer from 0 to 2^63 - 1, got {value!r}")
    return number


def device(name: str | torch.device) -> torch.device:
    """The torch device named ``name``; UsageError when it is unknown or not on this machine."""
    try:
        found = torch.device(name)
    except (RuntimeError, ValueError, TypeError) as error:
        raise UsageError(
            f"unknown device {str(name)!r} ({error}); use cpu, cuda, cuda:N or mps"
        ) from None
    if found.type not in DEVICE_TYPES:
        raise UsageError(
            f"device {str(name)!r}: training runs on cpu, cuda, cuda:N or mps, not on "
            f"{found.type!r}"
        )
    if found.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"device {str(name)!r} requested but no CUDA GPU is available; use cpu"
            )
        count = torch.cuda.device_count()
        if found.index is not None and found.index >= count:
            raise UsageError(
                f"device {str(name)!r}: this machine has {count} CUDA GPU(s), "
                f"numbered 0 to {count - 1}"
            )
    if found.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"device {str(name)!r} requested but MPS is not available; use cpu")
    return found


def output_folder(out_dir: Path, resume: bool) -> None:
    """Check that the run can write ``out_dir`` (a folder, or a path where one can be made).

    UsageError when ``out_dir`` or a folder above it is a file, when the nearest existing folder
    is not writable, or when one of the run's files is a folder there. A TrainNote lists the
    files a fresh run (not ``resume``) will overwrite.
    """
    try:
        _check_folder(out_dir)
        existing = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
        blocked = [name for name in existing if not (out_dir / name).is_file()]
    except OSError as error:  # a link loop, a name too long, ...
        raise UsageError(f"output folder {out_dir}: cannot use it ({error})") from None
    if blocked:
        raise UsageError(
            f"output folder {out_dir}: {', '.join(blocked)} is a folder there, where the run "
            "writes a file; remove it or choose another output folder (--out)"
        )
    if existing and not resume:
        hint = (
            f" (--resume continues the run its {CHECKPOINT_NAME} belongs to)"
            if CHECKPOINT_NAME in existing
            else ""
        )
        warnings.warn(
            f"{out_dir} already holds {', '.join(existing)}; this run overwrites them{hint}",
            TrainNote,
            stacklevel=3,
        )


def _check_folder(out_dir: Path) -> None:
    """``out_dir`` and every folder above it is a folder or absent; the deepest that exists is
    writable."""
    for part in [*reversed(out_dir.parents), out_dir]:
        if part.exists() and not part.is_dir():
            if part == out_dir:
                raise UsageError(f"output folder {out_dir} is a file; choose a folder (--out DIR)")
            raise UsageError(
                f"output folder {out_dir}: {part} is a file, so no folder can be made under it; "
                "choose another output folder (--out DIR)"
            )
    existing = next(part for part in [out_dir, *out_dir.parents] if part.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "the folder" if existing == out_dir else f"{existing}, where it would be made,"
        raise UsageError(
            f"output folder {out_dir}: {what} is not writable; choose another (--out DIR)"
        )
