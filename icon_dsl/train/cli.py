"""``icon-dsl train SPEC ...``: the command-line face of ``runtime.train``.

``add_train_command`` registers the subcommand on the main parser (icon_dsl/cli.py calls it).
Every failure prints one message, never a traceback, and exits with the code of
``icon_dsl.usage.EXIT_CODES``: SpecError, DataError and TrainError 1, UsageError and bad arguments
2, TrainingFailed, memory exhaustion and outputs that cannot be written 3. Notes (TrainNote) are
printed as ``note: ...`` when they are issued.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icon_dsl.diagnostics import SpecError
from icon_dsl.usage import (
    EXIT_ERRORS,
    EXIT_OK,
    EXIT_TRAINING,
    EXIT_USAGE,
    bounded_int,
    positive_int,
)

if TYPE_CHECKING:
    from icon_dsl.train.helper import Helper

SEED_MAX = 2**63 - 1


def add_train_command(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` to the subcommands ``sub`` of the icon-dsl parser."""
    p = sub.add_parser(
        "train",
        help="train a spec and write metrics, weights, the embedding and pictures",
        description="Train SPEC on a data set (default: scikit-learn's bundled digits) with the "
        "spec's generated loss; print a metrics table and write a run folder.",
    )
    p.add_argument("spec", metavar="SPEC", help="a spec file (any name, e.g. tsne.icon)")
    p.add_argument(
        "--data", default=None, metavar="DATA", help="digits (default) or a .npy/.npz/.csv"
    )
    p.add_argument("--label-column", default=None, metavar="C", help="the label column of a .csv")
    p.add_argument(
        "--epochs", type=positive_int, default=None, metavar="N", help="default: per spec kind"
    )
    p.add_argument(
        "--batch-size", type=bounded_int(2), default=None, metavar="B", help="samples per batch"
    )
    p.add_argument(
        "--seed", type=bounded_int(0, SEED_MAX), default=0, metavar="S", help="0 to 2^63-1 (0)"
    )
    p.add_argument(
        "--restarts",
        type=positive_int,
        default=None,
        metavar="R",
        help="train R starts, keep the lowest final divergence (default: 10 for clustering "
        "heads, else 1)",
    )
    p.add_argument(
        "--all-starts",
        action="store_true",
        help="large data, clustering heads: train every start to the end (default: the weaker "
        "half of the starts stops at 10%% and again at 30%% of the epochs)",
    )
    p.add_argument("--device", default="cpu", metavar="D", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--compile", action="store_true", help="wrap mapper and loss in torch.compile")
    p.add_argument("--out", default=None, metavar="DIR", help="default: runs/<spec>-<timestamp>")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a hyperparameter value (repeatable), e.g. --param sigma=1.0",
    )
    p.add_argument(
        "--standardize",
        action="store_true",
        help="train on features scaled to zero mean and unit variance",
    )
    p.add_argument(
        "--normaliser",
        choices=("auto", "exact", "sampled", "interpolated", "dense"),
        default="auto",
        help="large data: q's normaliser for table neighbour specs (t-SNE, SNE) and the sums "
        "over pairs of clustering heads (kmeans): auto (default: above 4096 rows the whole data "
        "every epoch, exact row blocks up to 8192 rows; above, interpolated for 1-2 D "
        "embeddings, else sampled), exact, sampled, interpolated (kernel sums on an FFT grid) "
        "or dense (the generated forward on mini-batches)",
    )
    p.add_argument(
        "--negatives",
        type=int,
        default=None,
        metavar="M",
        help="negatives (columns) per row and epoch of the sampled normaliser (default 64 for "
        "neighbour specs, 32 for clustering heads)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or metrics table")
    p.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        metavar="N",
        help="data-parallel over N processes (torchrun; gloo on CPU, nccl on CUDA)",
    )
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    try:
        params = parse_params(args.param)
    except ValueError as error:
        print(f"icon-dsl train: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:
        # torch loads only when a run starts: every command imports this module
        from icon_dsl.train.distributed import launch

        return launch(_argv_without_nproc(args), args.nproc)
    with _notes_on_stderr(), _helper(args.own_process) as helper:
        return _run_train(args, params, helper)


def _run_train(args: argparse.Namespace, params: dict[str, float], helper: Helper) -> int:
    """Train as asked; map each kind of failure to its message and exit code."""
    train = _load_runtime(args.own_process)
    if train is None:
        return EXIT_ERRORS
    import torch  # loaded by _load_runtime

    # the runtime's modules load only when a run starts (every command imports this module)
    from icon_dsl.train.errors import DataError, TrainError, TrainingFailed, UsageError

    try:
        train(
            Path(args.spec),
            data=args.data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            out=args.out,
            compile=args.compile,
            progress=not args.quiet,
            label_column=args.label_column,
            resume=args.resume,
            hyperparameters=params,
            restarts=args.restarts,
            standardize=args.standardize,
            normaliser=args.normaliser,
            negatives=args.negatives,
            halving=not args.all_starts,
            helper=helper,
        )
    except SpecError as error:
        print(error, file=sys.stderr)
        return EXIT_ERRORS
    except UsageError as error:
        print(f"icon-dsl train: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_TRAINING
    except (DataError, TrainError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERRORS
    except torch.OutOfMemoryError as error:
        first = str(error).splitlines()[0] if str(error) else "out of memory"
        print(
            f"error: training ran out of memory ({first}); try a smaller --batch-size",
            file=sys.stderr,
        )
        return EXIT_TRAINING
    except OSError as error:  # the folder was checked before training: a disk full, a mount lost
        where = f" {error.filename}" if error.filename else ""
        print(f"error: cannot write the run's outputs{where}: {error.strerror}", file=sys.stderr)
        return EXIT_TRAINING
    return EXIT_OK


def _load_runtime(own_process: bool) -> Callable[..., Any] | None:
    """The runtime's ``train``; None, with the message printed, when the train extra is missing.

    The training runtime loads only when a run starts: every command imports this module, and
    check, compile and explain must import nothing of it (tests/test_startup.py). A process of
    the command's own is set up for the run meanwhile (``own_process.py``)."""
    # loaded only when a run starts, as everything of the runtime (docstring)
    from icon_dsl.train import own_process as process
    from icon_dsl.train.errors import TrainError

    with process.training_process() if own_process else nullcontext():
        # inside: the training stack is imported while the process is set up for it
        from icon_dsl.train.extras import require_train_extra

        try:
            require_train_extra()
        except TrainError as error:
            print(f"error: {error}", file=sys.stderr)
            return None
        from icon_dsl.train.runtime import train  # torch and the train extra load here
    return train


def _helper(own_process: bool) -> Helper:
    """The run's helper (icon_dsl/train/helper.py): with a second process, started before torch
    loads, when the process is the command's own and writes the outputs (rank 0)."""
    from icon_dsl.train.helper import Helper  # only for a run: it may start a second process

    return Helper(process=own_process and os.environ.get("RANK", "0") == "0")


@contextmanager
def _notes_on_stderr() -> Iterator[None]:
    """Print every TrainNote issued inside as ``note: MESSAGE`` on stderr, when it is issued."""
    # as above: check, compile and explain import nothing of the training runtime
    from icon_dsl.train.errors import TrainNote

    def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        if issubclass(category, TrainNote):
            print(f"note: {message}", file=sys.stderr)
        else:
            original(message, category, *args, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("always", TrainNote)
        original = warnings.showwarning
        warnings.showwarning = show
        yield


def _argv_without_nproc(args: argparse.Namespace) -> list[str]:
    """The train command's own arguments, for each torchrun process."""
    argv = ["train", args.spec, "--seed", str(args.seed), "--device", args.device]
    for flag, value in (
        ("--data", args.data),
        ("--label-column", args.label_column),
        ("--epochs", args.epochs),
        ("--batch-size", args.batch_size),
        ("--restarts", args.restarts),
        ("--out", args.out),
    ):
        if value is not None:
            argv += [flag, str(value)]
    for flag, on in (
        ("--compile", args.compile),
        ("--resume", args.resume),
        ("--quiet", args.quiet),
        ("--standardize", args.standardize),
    ):
        if on:
            argv.append(flag)
    for item in args.param:
        argv += ["--param", item]
    return argv


def parse_params(items: list[str]) -> dict[str, float]:
    """``["sigma=1.0", "k=5"]`` -> ``{"sigma": 1.0, "k": 5.0}``; ValueError names a bad item."""
    params: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--param {name}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"--param {name}: {value!r} is not a finite number")
        params[name] = number
    return params
