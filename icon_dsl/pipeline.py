"""The front of the compiler, chained: text -> parse -> lower -> checks -> a checked IR.

This is the one place the stages are run in order; everything that needs a checked spec (the
API, the known-method index, explain, the docs, the enumeration, training) comes through here.

Takes: spec text, a path to a .icon file, or a Source. Guarantees: `check` returns the IR of a
spec with no errors (notes attached) or raises SpecError carrying every diagnostic at once.
"""

from __future__ import annotations

import keyword
import sys
from dataclasses import dataclass
from pathlib import Path

from . import checks, limits
from .diagnostics import Diagnostic, Diagnostics
from .ir import IR
from .lower import lower
from .parser import parse as parse_source
from .source import Source
from .syntax import Spec


def load_source(spec: str | Path | Source) -> Source:
    """A Source from text, a path to a .icon file, or a Source."""
    if isinstance(spec, Source):
        return spec
    if isinstance(spec, Path) or (
        isinstance(spec, str) and spec.endswith(".icon") and "\n" not in spec
    ):
        return _read(Path(spec))
    return Source(spec)


def _read(path: Path) -> Source:
    """The spec file at `path`; a missing or unreadable file is a SpecError naming it."""
    if not path.is_file():
        diags = Diagnostics(Source("", str(path)))
        why = "is a directory, not a spec file" if path.is_dir() else "does not exist"
        diags.error("file", f"spec file {path} {why}")
        diags.raise_if_errors()
    try:
        size = path.stat().st_size
        if size > limits.MAX_SPEC_BYTES:  # refused unread: a file may be any size
            diags = Diagnostics(Source("", str(path)))
            diags.error(
                "spec-too-large",
                f"spec file {path} has {size:,} bytes, more than the limit of "
                f"{limits.MAX_SPEC_BYTES:,}",
            )
            diags.raise_if_errors()
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        diags = Diagnostics(Source("", str(path)))
        diags.error("file", f"cannot read spec file {path}: {err}")
        diags.raise_if_errors()
    return Source(text, str(path))


def parse(spec: str | Path | Source) -> Spec:
    """Parse spec text (or a path) into surface syntax; raises SpecError on syntax errors."""
    return parse_source(load_source(spec))


@dataclass
class Checked:
    ir: IR
    notes: list[Diagnostic]


def check(spec: str | Path | Source) -> Checked:
    """Parse, lower and check a spec. Raises SpecError with every error found."""
    src = load_source(spec)
    syntax = parse_source(src)
    diags = Diagnostics(src)
    ir = lower(syntax, diags, default_name=identifier(stem(src)))
    if ir is not None:
        checks.run_all(ir, diags)
    diags.raise_if_errors()
    assert ir is not None
    return Checked(ir, list(diags.items))


def stem(src: Source) -> str:
    """The file name of a spec without `.icon`, or "method" for text without a file."""
    return Path(src.name).stem if src.name.endswith(".icon") else "method"


def identifier(name: str) -> str:
    """A module / method name: an identifier that is not a Python keyword, nor the name of a
    module a generated file imports (a `torch.py` next to it would shadow torch)."""
    out = "".join(ch if ch.isascii() and (ch.isalnum() or ch == "_") else "_" for ch in name)
    out = out if out and not out[0].isdigit() else f"m_{out}"
    while keyword.iskeyword(out) or out in sys.stdlib_module_names or out == "torch":
        out += "_"
    return out


__all__ = ["Checked", "check", "identifier", "load_source", "parse", "stem"]
