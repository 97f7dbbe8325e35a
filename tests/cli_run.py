"""Run an icon-dsl command in-process as a terminal would, and check that it ends in a message.

``run_cli`` calls ``icon_dsl.cli.main`` with stdout and stderr captured. An exception that
escapes ``main`` is what a terminal shows as a traceback, so it fails the test with the command
line; so does the word "Traceback" in what the command printed. ``expect`` checks the exit code.
"""

from __future__ import annotations

import io
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from icon_dsl.cli import main


@dataclass(frozen=True)
class Ran:
    """A finished command: its exit code and what it printed."""

    code: int
    out: str
    err: str


def run_cli(*argv: str | Path, expect: int | None = None) -> Ran:
    """``icon-dsl ARGV...``; fail unless it ends in a message (and exits ``expect``)."""
    args = [str(arg) for arg in argv]
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(args)
    except BaseException as error:  # SystemExit too: main returns its code, it never exits
        shown = "".join(traceback.format_exception(error))
        pytest.fail(f"icon-dsl {' '.join(args)} ended in a traceback:\n{shown}")
    ran = Ran(code, out.getvalue(), err.getvalue())
    assert "Traceback" not in ran.out + ran.err, f"icon-dsl {' '.join(args)}:\n{ran.err}"
    if expect is not None:
        assert ran.code == expect, (
            f"icon-dsl {' '.join(args)} exited {ran.code}, expected {expect}:\n{ran.err[-3000:]}"
        )
    return ran
