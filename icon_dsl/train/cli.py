"""``icon-dsl train SPEC ...``: the command-line face of ``runtime.train``.

``add_train_command`` registers the subcommand on the main parser (icon_dsl/cli.py calls it).
DataError, TrainError and SpecError print their message (no traceback) and exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


def add_train_command(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` to the subcommands ``sub`` of the icon-dsl parser."""
    p = sub.add_parser(
        "train",
        help="train a spec and write metrics, weights, the embedding and pictures",
        description="Train SPEC on a data set (default: scikit-learn's bundled digits) with the "
        "spec's generated loss; print a metrics table and write a run folder.",
    )
    p.add_argument("spec", metavar="SPEC", help="a .icon file")
    p.add_argument(
        "--data", default=None, metavar="DATA", help="digits (default) or a .npy/.npz/.csv"
    )
    p.add_argument("--label-column", default=None, metavar="C", help="the label column of a .csv")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="default: per spec kind")
    p.add_argument("--batch-size", type=int, default=None, metavar="B", help="samples per batch")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="default: 0")
    p.add_argument(
        "--restarts",
        type=int,
        default=None,
        metavar="R",
        help="train R starts, keep the lowest final divergence (default: 10 for clustering "
        "heads, else 1)",
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
    p.add_argument("--quiet", action="store_true", help="no progress bar or metrics table")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="data-parallel over N processes (torchrun; gloo on CPU, nccl on CUDA)",
    )
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from icon_dsl.diagnostics import SpecError
    from icon_dsl.train.errors import DataError, TrainError

    try:
        params = parse_params(args.param)
    except ValueError as error:
        print(f"icon-dsl train: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.nproc < 1:
        print("icon-dsl train: error: --nproc must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:
        from icon_dsl.train.distributed import launch

        return launch(_argv_without_nproc(args), args.nproc)
    try:
        from icon_dsl.train.runtime import train

        train(
            args.spec,
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
        )
    except SpecError as error:
        print(error, file=sys.stderr)
        return EXIT_ERRORS
    except (DataError, TrainError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERRORS
    return EXIT_OK


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
            params[name] = float(value)
        except ValueError:
            raise ValueError(f"--param {name}: {value!r} is not a number") from None
    return params
