"""Atomic, safely loaded checkpoints: the training state after each epoch, in
``<out>/checkpoint.pt``.

``save`` writes to a temporary file in the same folder, flushes it to disk and renames it over
the old checkpoint, so an interrupted run always leaves either the previous checkpoint or the new
one, never a torn file. It stores only tensors and plain data (numpy arrays become tensors), so
``load`` reads it with ``torch.load(weights_only=True)``: a file that carries any other pickled
object is refused, never executed. ``load`` returns None when there is no checkpoint and raises
TrainError, naming the file and what is wrong, when the file cannot be read, lacks a part of the
training state, or belongs to a different run (another spec, data set or settings).
``check_weights`` and ``check_optimizer`` compare the saved tensors, key by key, with the model
they are about to be loaded into.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icon_dsl.train.errors import TrainError

CHECKPOINT_NAME = "checkpoint.pt"

#: Every part of the training state, with its type and what it holds (for messages).
FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "fingerprint": (dict, "the settings of the run that wrote it"),
    "epoch": (int, "the number of epochs done"),
    "mapper": (dict, "the mapper's weights"),
    "loss": (dict, "the loss module's parameters and buffers"),
    "optimizer": (dict, "the optimiser's state"),
    "scheduler": (dict, "the learning-rate schedule's state"),
    "losses": (list, "the loss of every epoch"),
    "snapshots": (list, "the p / q snapshots"),
    "start": (int, "the start being trained"),
    "start_kls": (list, "the final KL of every finished start"),
    "best": ((dict, type(None)), "the best finished start"),
    "elapsed": (float, "the wall time so far"),
}
_FRESH = "start afresh without --resume, or pass another --out"


def save(out_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically to ``out_dir/checkpoint.pt``; return the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CHECKPOINT_NAME
    tmp = out_dir / f".{CHECKPOINT_NAME}.tmp"
    with tmp.open("wb") as handle:
        torch.save(_plain(state), handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def load(out_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state, or None when ``out_dir`` has no checkpoint.

    Raises TrainError when the checkpoint is unreadable, holds anything but tensors and plain
    data, lacks a part of the state, or its fingerprint differs from ``fingerprint`` (the
    message names the first setting that differs).
    """
    path = out_dir / CHECKPOINT_NAME
    if not path.exists():
        return None
    if not path.is_file():
        raise TrainError(f"{path}: is a directory, not a checkpoint file; remove it or {_FRESH}")
    state = _read(path)
    check_fields(path, state)
    saved = state["fingerprint"]
    for key in sorted(set(saved) | set(fingerprint)):
        if saved.get(key) != fingerprint.get(key):
            raise TrainError(
                f"{path}: the checkpoint was written by a different run ({key}: "
                f"{saved.get(key)!r} in the checkpoint, {fingerprint.get(key)!r} now); "
                "resume with the same spec, data and settings, or use another --out"
            )
    return state


def _read(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(error))
        what = f" ({found.group(1)})" if found else ""
        raise TrainError(
            f"{path}: refused: the file holds a Python object{what}, not only tensors and plain "
            "data; icon-dsl checkpoints never do, and loading it could run code. Use a "
            f"checkpoint written by icon-dsl train, or {_FRESH}"
        ) from None
    except Exception as error:  # a torn or foreign file: say so, do not crash
        raise TrainError(f"{path}: cannot read the checkpoint ({error}); {_FRESH}") from None
    if not isinstance(state, dict):
        raise TrainError(f"{path}: not an icon-dsl training checkpoint; {_FRESH}")
    return state


def check_fields(path: Path, state: Mapping[str, Any]) -> None:
    """Every field of ``FIELDS`` present with its type; TrainError names the first that is not."""
    missing = [key for key in FIELDS if key not in state]
    if missing:
        parts = ", ".join(f"{key!r} ({FIELDS[key][1]})" for key in missing)
        raise TrainError(f"{path}: the checkpoint is incomplete: it has no {parts}; {_FRESH}")
    for key, (kind, meaning) in FIELDS.items():
        value = state[key]
        if kind is float and isinstance(value, int):
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TrainError(
                f"{path}: the checkpoint's {key!r} ({meaning}) is a {type(value).__name__}, "
                f"not a {_kind_name(kind)}; {_FRESH}"
            )


def check_weights(
    path: Path, what: str, saved: Mapping[str, Any], expected: Mapping[str, torch.Tensor]
) -> None:
    """``saved`` has exactly the tensors of ``expected`` (a state_dict), with the same shapes.

    TrainError lists the missing and unexpected keys and the first shape that differs.
    """
    missing = [key for key in expected if key not in saved]
    extra = [key for key in saved if key not in expected]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected {', '.join(map(str, extra))}")
    for key, tensor in expected.items():
        value = saved.get(key)
        if key in saved and not isinstance(value, torch.Tensor):
            problems.append(f"{key} is a {type(value).__name__}, not a tensor")
        elif isinstance(value, torch.Tensor) and value.shape != tensor.shape:
            problems.append(
                f"{key} has shape {tuple(value.shape)} in the checkpoint, "
                f"{tuple(tensor.shape)} in this run's model"
            )
    if problems:
        raise TrainError(
            f"{path}: the checkpoint's {what} do not fit this run's model: "
            f"{'; '.join(problems)}; {_FRESH}"
        )


def check_optimizer(path: Path, saved: Mapping[str, Any], params: list[torch.Tensor]) -> None:
    """The saved Adam state covers ``params`` (in order) with moments of their shapes."""
    groups = saved.get("param_groups")
    state = saved.get("state")
    if not isinstance(groups, list) or not isinstance(state, dict):
        raise TrainError(
            f"{path}: the checkpoint's optimiser state has no 'param_groups' and 'state'; {_FRESH}"
        )
    count = sum(len(group.get("params", ())) for group in groups if isinstance(group, dict))
    if count != len(params):
        raise TrainError(
            f"{path}: the checkpoint's optimiser state is for {count} parameter tensor(s), this "
            f"run's model has {len(params)}; {_FRESH}"
        )
    for index, moments in state.items():
        if not isinstance(index, int) or not 0 <= index < len(params):
            raise TrainError(
                f"{path}: the optimiser state has an unknown entry {index!r}; {_FRESH}"
            )
        if not isinstance(moments, dict):
            raise TrainError(f"{path}: the optimiser state of parameter {index} is not a dict")
        for name in ("exp_avg", "exp_avg_sq"):
            value = moments.get(name)
            if not isinstance(value, torch.Tensor) or value.shape != params[index].shape:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else "missing"
                raise TrainError(
                    f"{path}: the optimiser's {name} of parameter {index} is {shape}, the "
                    f"parameter has shape {tuple(params[index].shape)}; {_FRESH}"
                )


def _plain(value: Any) -> Any:
    """``value`` with numpy arrays and scalars as tensors and Python numbers (for weights_only)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return type(value)((key, _plain(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("None" if k is type(None) else k.__name__ for k in kinds)


def check_against(
    path: Path,
    state: Mapping[str, Any],
    mapper: torch.nn.Module,
    loss: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> None:
    """The saved weights and optimiser state fit the run's mapper, loss and optimiser."""
    check_weights(path, "mapper weights", state["mapper"], mapper.state_dict())
    check_weights(path, "loss parameters", state["loss"], loss.state_dict())
    params = [p for group in optimizer.param_groups for p in group["params"]]
    check_optimizer(path, state["optimizer"], params)
    best = state["best"]
    if best is not None:
        missing = [
            k for k in ("start", "kl", "mapper", "loss", "losses", "snapshots") if k not in best
        ]
        if missing:
            raise TrainError(
                f"{path}: the checkpoint's best start has no {', '.join(missing)}; {_FRESH}"
            )
        check_weights(path, "best start's mapper weights", best["mapper"], mapper.state_dict())
        check_weights(path, "best start's loss parameters", best["loss"], loss.state_dict())


def snapshots(saved: list[Any]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """The p / q snapshots of a loaded state as (epoch, p, q) numpy arrays, as the run keeps them."""
    return [(int(epoch), _array(p), _array(q)) for epoch, p, q in saved]


def _array(value: Any) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
