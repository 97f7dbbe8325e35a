"""The command lines' shared vocabulary: exit statuses and argument types.

`icon-dsl` (cli.py) and its `train` subcommand (train/cli.py) both use these; they live below
both so that neither command line imports the other.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_TRAINING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: What each exit code means (docs/errors.md and the README show this table).
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_ERRORS: "a spec or the data has errors (a spec's diagnostics, an unusable data file, a "
    "checkpoint that does not fit the run, a hyperparameter that is missing or out of range)",
    EXIT_USAGE: "bad usage: an unknown option, an argument out of range (a seed, a batch size, "
    "a device), an output folder that is a file or cannot be written",
    EXIT_TRAINING: "training started and failed: a loss or gradient that is not finite, memory "
    "exhausted, an output that could not be written",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (the message names the value)."""
    return bounded_int(1)(text)


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [low, high] (high None: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            upper = f" and at most {high}" if high is not None else ""
            raise argparse.ArgumentTypeError(f"must be at least {low}{upper}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


__all__ = [
    "EXIT_CODES",
    "EXIT_ERRORS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TRAINING",
    "EXIT_USAGE",
    "bounded_int",
    "positive_int",
]
