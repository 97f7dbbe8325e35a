"""Atomic checkpoints: the training state after each epoch, in ``<out>/checkpoint.pt``.

``save`` writes to a temporary file in the same folder, flushes it to disk and renames it over
the old checkpoint, so an interrupted run always leaves either the previous checkpoint or the new
one, never a torn file. ``load`` returns None when there is none and raises TrainError when the
file cannot be read or belongs to a different run (another spec, data set or settings).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from icon_dsl.train.errors import TrainError

CHECKPOINT_NAME = "checkpoint.pt"


def save(out_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically to ``out_dir/checkpoint.pt``; return the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CHECKPOINT_NAME
    tmp = out_dir / f".{CHECKPOINT_NAME}.tmp"
    with tmp.open("wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def load(out_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state, or None when ``out_dir`` has no checkpoint.

    Raises TrainError when the checkpoint is unreadable or its fingerprint differs from
    ``fingerprint`` (the message names the first setting that differs).
    """
    path = out_dir / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a torn or foreign file: say so, do not crash
        raise TrainError(f"{path}: cannot read the checkpoint ({error})") from None
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise TrainError(f"{path}: not an icon-dsl training checkpoint")
    saved = state["fingerprint"]
    for key in sorted(set(saved) | set(fingerprint)):
        if saved.get(key) != fingerprint.get(key):
            raise TrainError(
                f"{path}: the checkpoint was written by a different run ({key}: "
                f"{saved.get(key)!r} in the checkpoint, {fingerprint.get(key)!r} now); "
                "resume with the same spec, data and settings, or use another --out"
            )
    return state
