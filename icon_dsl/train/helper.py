"""The run's work that needs scikit-learn or matplotlib, in a second process where one runs.

``icon-dsl train`` in a process of its own (``own_process.py``) starts a ``Helper`` with a second
process before it loads torch. That process imports scikit-learn, matplotlib and the modules of
icon_dsl that use them, on the core that the first process's imports leave idle, and then runs
the calls it is sent, one after another: reading the digits, checking which metrics the data
supports, the metrics of the trained embedding, and neighbours.png (the longest picture, about
1.0 s of matplotlib on digits) while the first process writes the rest of the run folder. The
first process never imports scikit-learn (0.7 s).

A call names its function as ``"module:function"``, so that the caller need not import the
module. It returns the function's value; what the function raises there is raised here, with
the other process's traceback as its cause. The numbers and files are those of the same call
made here (the same functions on the same, pickled, arrays). Where the second process cannot
answer (not started, gone, or a value that cannot travel), the call runs here; a ``Helper``
without a process (``process=False``, a run called from a program) runs every call here, in the
order they were started.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from collections import deque
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any

from icon_dsl.train.own_process import libraries_frozen

# the second process: this module's serve(); without it (a broken install) it just ends, and
# every call runs in the run's process
_SERVE = """
try:
    from icon_dsl.train.helper import serve
except ImportError:
    serve = None
if serve is not None:
    serve()
"""
#: What the second process loads before it takes calls: the first calls need scikit-learn.
PRELOAD = ("sklearn.datasets", "icon_dsl.train.data", "icon_dsl.train.metrics")
#: What it loads meanwhile, in a thread, for the pictures at the end of the run.
PRELOAD_PICTURES = ("matplotlib.figure", "matplotlib.backends.backend_agg", "icon_dsl.train.plots")
Call = tuple[str, tuple[Any, ...], dict[str, Any]]


class Helper:
    """Runs calls in a second process (``process=True``) or here; ``with`` ends the process."""

    def __init__(self, process: bool) -> None:
        self.pending: deque[tuple[Call, bool]] = deque()  # (call, sent there) in start order
        self.process: subprocess.Popen[bytes] | None = _launch() if process else None

    def call(self, target: str, *args: Any, **kwargs: Any) -> Any:
        """``target(*args, **kwargs)`` (``target``: "module:function"), there if possible."""
        self.start(target, *args, **kwargs)
        return self.wait()

    def start(self, target: str, *args: Any, **kwargs: Any) -> None:
        """Begin ``target(*args, **kwargs)`` there; ``wait`` takes its outcome (calls started
        before it first). Without a second process it runs at its ``wait``."""
        call = (target, args, kwargs)
        self.pending.append((call, self._send(call)))

    def wait(self) -> Any:
        """The value of the oldest call not waited for; raise what it raised."""
        call, sent = self.pending.popleft()
        answer = self._answer() if sent and self.process is not None else None
        if answer is None or answer[0] == "unsent":  # no answer to take: run it here
            target, args, kwargs = call
            return _function(target)(*args, **kwargs)
        if answer[0] == "raised":
            _, error, trace = answer
            raise error from RemoteTraceback(trace)
        return answer[1]

    def _send(self, call: Call) -> bool:
        if self.process is None or self.process.stdin is None:
            return False
        try:
            message = pickle.dumps(call)
        except Exception:  # an argument that cannot travel: this call runs here
            return False
        try:
            self.process.stdin.write(message)
            self.process.stdin.flush()
        except OSError:  # the process is gone
            self._lose()
            return False
        return True

    def _answer(self) -> tuple[Any, ...] | None:
        """("returned", value), ("raised", error, its traceback) or ("unsent",) (a value that
        cannot travel); None when no answer came."""
        assert self.process is not None and self.process.stdout is not None
        try:
            answer: tuple[Any, ...] = pickle.load(self.process.stdout)
        except Exception:  # the process died, or the answer cannot be read here
            self._lose()
            return None
        return answer

    def _lose(self) -> None:
        """Give up on the second process: every call from now on runs here."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> Helper:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        while self.pending and self.pending[0][1] and self.process is not None:
            self._answer()  # a picture being written is finished, never torn
            self.pending.popleft()
        if self.process is not None:
            self.process.kill()  # nothing runs there now (it may still be importing)
            self.process.wait()


def _launch() -> subprocess.Popen[bytes] | None:
    """The second process, importing this icon_dsl; None when no interpreter can start."""
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding icon_dsl/
    paths = [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    try:
        return subprocess.Popen(
            [sys.executable, "-c", _SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
    except OSError:
        return None


def _function(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def serve() -> None:
    """The second process: load ``PRELOAD``, then answer each call that comes on stdin, on
    stdout, with ("returned", value), ("raised", what it raised, its traceback) or ("unsent",),
    while a thread loads ``PRELOAD_PICTURES`` (a call that needs them waits for their import)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the run's process to handle
    if hasattr(os, "nice"):
        os.nice(10)  # imports still running when training starts must not slow it down
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # what a call prints goes to stderr
    with libraries_frozen():
        _preload(PRELOAD)
    # the run asks for the digits about when matplotlib would be loaded: load it alongside
    threading.Thread(target=_preload, args=(PRELOAD_PICTURES,), daemon=True).start()
    while True:
        try:
            target, args, kwargs = pickle.load(sys.stdin.buffer)
        except EOFError:  # the run's process is gone
            return
        try:
            message = pickle.dumps(_outcome(target, args, kwargs))
        except Exception:  # a value or error that cannot travel: the run computes it itself
            message = pickle.dumps(("unsent",))
        try:
            answers.write(message)
            answers.flush()
        except OSError:  # the run's process is gone
            os._exit(0)


def _preload(modules: tuple[str, ...]) -> None:
    for module in modules:
        with suppress(ImportError):  # a missing package: the run says so, and calls fail
            importlib.import_module(module)


def _outcome(target: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    try:
        return ("returned", _function(target)(*args, **kwargs))
    except Exception as error:  # raised again in the run's process, by Helper.wait
        return ("raised", error, "".join(traceback.format_exception(error)))


class RemoteTraceback(Exception):
    """The traceback of an error raised in the helper's process (its cause, there)."""
