"""The command line: `icon-dsl check | compile | explain | enumerate | train`.

Guarantees: every command ends in a message and one of the exit codes of ``EXIT_CODES``: 0 when
all is fine, 1 for errors in a spec or the data (all of them printed), 2 for bad usage (an
argument out of range, a folder that cannot be written), 3 when training started and failed.
A user's mistake never shows a traceback; one is shown only for a bug in icon-dsl itself.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import api
from .codegen.blocks import NORMALISERS
from .diagnostics import SpecError
from .explain import explain
from .train.cli import add_train_command
from .usage import (
    EXIT_ERRORS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    positive_int,
)


def _print_notes(notes: Sequence[object], source: object) -> None:
    for note in notes:
        print(note.render(source), file=sys.stderr)  # type: ignore[attr-defined]


def cmd_check(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for spec in args.specs:
        try:
            checked = api.check(Path(spec))
        except SpecError as err:
            print(err, file=sys.stderr)
            status = EXIT_ERRORS
            continue
        _print_notes(checked.notes, checked.ir.source)
        print(f"{spec}: ok")
    return status


def cmd_compile(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for spec in args.specs:
        try:
            module = api.compile(Path(spec), normaliser=args.normaliser)
        except SpecError as err:
            print(err, file=sys.stderr)
            status = EXIT_ERRORS
            continue
        _print_notes(module.notes, module.ir.source)
        try:
            path = module.write(args.output)
        except OSError as err:
            print(
                f"icon-dsl: error: cannot write to {args.output}: {err.strerror}", file=sys.stderr
            )
            return EXIT_USAGE
        known = f" ({module.known_as})" if module.known_as else ""
        print(f"{spec} -> {path}: class {module.class_name}{known}")
    return status


def cmd_explain(args: argparse.Namespace) -> int:
    try:
        print(explain(Path(args.spec), batch=args.batch))
    except SpecError as err:
        print(err, file=sys.stderr)
        return EXIT_ERRORS
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icon-dsl",
        description="A declarative language and compiler for I-Con representation-learning objectives.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="check specs and print diagnostics")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("compile", help="generate standalone torch modules")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("-o", "--output", default="generated", metavar="DIR", help="default: generated/")
    p.add_argument(
        "--normaliser",
        choices=NORMALISERS,
        default="dense",
        help="how forward takes q's normaliser: dense (default: N x N), exact (row blocks, "
        "memory N x block_size, the same numbers; N x N specs whose rows need no other row) "
        "or sampled (p kept on each row's nearest neighbours, q's normaliser estimated from "
        "uniform columns; t-SNE-like specs with a perplexity or knn p)",
    )
    p.set_defaults(func=cmd_compile)
    p = sub.add_parser("explain", help="the objective as formulas, its table cell and known name")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument(
        "--batch", type=positive_int, metavar="N", help="also predict the loss's peak memory"
    )
    p.set_defaults(func=cmd_explain)
    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return parser


# Later stages (enumeration, training) register their subcommands here.
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def _register_enumerate(sub: argparse._SubParsersAction) -> None:
    """`icon-dsl enumerate`: the periodic table (icon_dsl/enumeration/cli.py does the work)."""
    # imported here, not at the top: a later layer (enumeration) registers itself
    from .enumeration.cli import add_enumerate_command

    add_enumerate_command(sub)


_EXTRA_COMMANDS.append(_register_enumerate)


def _register_train(sub: argparse._SubParsersAction) -> None:
    """`icon-dsl train`: the training runtime (icon_dsl/train/cli.py does the work)."""
    add_train_command(sub)


_EXTRA_COMMANDS.append(_register_train)


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Run one command; its exit code. ``own_process``: the command may set up the whole
    process for itself (``console_main``; icon_dsl/train/own_process.py says what train sets)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) and EXIT_USAGE
    args.own_process = own_process
    try:
        return int(args.func(args))
    except BrokenPipeError:  # the reader left (`icon-dsl explain SPEC | head`): not an error
        # point stdout at /dev/null so that the interpreter's final flush stays quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:  # a path given as an argument that cannot be written or read
        where = f"{error.filename}: " if error.filename else ""
        why = error.strerror or str(error)
        if isinstance(error, (FileExistsError, NotADirectoryError)):
            why = "cannot make a folder there: a file has that name or is on its path"
        print(f"icon-dsl: error: {where}{why}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def console_main() -> int:
    """``icon-dsl`` (the console script, ``python -m icon_dsl.cli``): one command in a process of
    its own, which ends after it."""
    code = main(own_process=True)
    # the interpreter's shutdown would walk every object the command loaded in full collection
    # passes once more, to free nothing the exit does not: 0.6 s once torch and scikit-learn
    # are loaded
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(console_main())
