"""One picture drawn in a second process while this one finishes the run.

``icon-dsl train`` in a process of its own (``own_process.py``) starts a ``Painter`` before it
loads torch. The second process imports matplotlib and the plots meanwhile, on the core that
the imports of the first leave idle, then waits. At the end of the run it draws neighbours.png
(about 1.0 s of matplotlib on digits, the longest picture) while this process computes the
metrics, writes the other files and draws the other pictures.

It calls the same function on the same arrays (pickled), so it writes the same file. What the
function raises there, ``wait`` raises here (with the other process's traceback as its cause);
if the second process cannot take the picture (it did not start, or it is gone), ``wait``
draws it here.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import icon_dsl

# the second process: import what drawing needs, then serve one picture
_SERVE = "from icon_dsl.train.painter import serve; serve()"
Picture = tuple[Callable[..., object], tuple[Any, ...], dict[str, Any]]


class Painter:
    """A second process that draws one picture; ``with`` ends it however the run ends."""

    def __init__(self) -> None:
        package_root = str(Path(icon_dsl.__file__).resolve().parent.parent)
        paths = [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # this icon_dsl, there too
        self.picture: Picture | None = None
        self.sent = False
        try:
            self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-c", _SERVE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        except OSError:  # no interpreter to start: every picture is drawn here
            self.process = None

    def start(self, function: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Have ``function(*args, **kwargs)`` drawn there, from now on."""
        self.picture = (function, args, kwargs)
        if self.process is None or self.process.stdin is None:
            return
        try:
            pickle.dump(self.picture, self.process.stdin)
            self.process.stdin.close()
            self.sent = True
        except OSError:  # the process is gone: wait() draws it here
            pass

    def wait(self) -> None:
        """Return once the picture is drawn; raise what drawing it raised."""
        assert self.picture is not None, "start() a picture first"
        answer = self._answer()
        if answer is None:  # no second process could draw it
            function, args, kwargs = self.picture
            function(*args, **kwargs)
        elif answer[0] == "raised":
            _, error, trace = answer
            raise error from RemoteTraceback(trace)

    def _answer(self) -> tuple[Any, ...] | None:
        """The process's answer, ("drawn",) or ("raised", error, its traceback); None when
        the picture never reached it or no answer came back."""
        if not self.sent:
            return None
        assert self.process is not None and self.process.stdout is not None
        try:
            answer: tuple[Any, ...] | None = pickle.load(self.process.stdout)
        except Exception:  # none came (the process died) or it cannot be read: drawn here
            answer = None
        self.process.wait()
        return answer

    def __enter__(self) -> Painter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.process is None:
            return
        if not self.sent:
            self.process.kill()  # it was only importing or waiting
        self.process.wait()  # a picture it started is finished, never torn


def serve() -> None:
    """The second process: import the plots, draw the one picture that comes on stdin, and
    answer on stdout: ("drawn",), or ("raised", what drawing raised, its traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the run's process to handle
    if hasattr(os, "nice"):
        os.nice(10)  # imports still running when training starts must not slow it down
    import matplotlib.backends.backend_agg  # noqa: F401  (what the first picture would load)
    import matplotlib.figure  # noqa: F401

    from icon_dsl.train import plots  # noqa: F401  (the pictures, while there is time)

    try:
        function, args, kwargs = pickle.load(sys.stdin.buffer)
    except EOFError:
        return  # the run ended without a picture for this process
    answer: tuple[Any, ...] = ("drawn",)
    try:
        function(*args, **kwargs)
    except Exception as error:  # raised again in the run's process, by Painter.wait
        answer = ("raised", _portable(error), "".join(traceback.format_exception(error)))
    pickle.dump(answer, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    # the picture is closed and the answer sent; the interpreter's shutdown (0.2 s with
    # matplotlib and sympy loaded) would only delay the run, which waits for this process
    os._exit(0)


class RemoteTraceback(Exception):
    """The traceback of an error raised in the painter's process (its cause, there)."""


def _portable(error: Exception) -> Exception:
    """``error`` itself if it can be pickled, else a RuntimeError that names it."""
    try:
        pickle.dumps(error)
    except Exception:
        return RuntimeError(f"drawing raised {error!r}")
    return error
