"""The Python API: parse, check and compile a spec.

Takes: spec text, a path, or a Source. Guarantees: `check` returns the IR of a spec with no errors
(notes attached) or raises SpecError carrying every diagnostic at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import checks
from .diagnostics import Diagnostic, Diagnostics, SpecError
from .ir import IR
from .lower import lower
from .parser import parse as _parse
from .source import Source
from .syntax import Spec


def load_source(spec: str | Path | Source) -> Source:
    """A Source from text, a path to a .icon file, or a Source."""
    if isinstance(spec, Source):
        return spec
    if isinstance(spec, Path) or (
        isinstance(spec, str) and spec.endswith(".icon") and "\n" not in spec
    ):
        path = Path(spec)
        if not path.is_file():
            src = Source("", str(path))
            diags = Diagnostics(src)
            why = "is a directory, not a spec file" if path.is_dir() else "does not exist"
            diags.error("file", f"spec file {path} {why}")
            diags.raise_if_errors()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            src = Source("", str(path))
            diags = Diagnostics(src)
            diags.error("file", f"cannot read spec file {path}: {err}")
            diags.raise_if_errors()
        return Source(text, str(path))
    return Source(spec)


def parse(spec: str | Path | Source) -> Spec:
    """Parse spec text (or a path) into surface syntax; raises SpecError on syntax errors."""
    return _parse(load_source(spec))


@dataclass
class Checked:
    ir: IR
    notes: list[Diagnostic]


def check(spec: str | Path | Source) -> Checked:
    """Parse, lower and check a spec. Raises SpecError with every error found."""
    src = load_source(spec)
    syntax = _parse(src)
    diags = Diagnostics(src)
    stem = Path(src.name).stem if src.name.endswith(".icon") else "method"
    ir = lower(syntax, diags, default_name=_identifier(stem))
    if ir is not None:
        checks.run_all(ir, diags)
    diags.raise_if_errors()
    assert ir is not None
    return Checked(ir, list(diags.items))


@dataclass
class CompiledModule:
    """A generated module: its source, and ways to load or write it."""

    source: str
    class_name: str
    stem: str
    ir: IR
    known_as: str | None
    notes: list[Diagnostic]

    def load(self) -> type:
        """Execute the generated source in a fresh module and return the loss class."""
        namespace: dict[str, object] = {"__name__": f"icon_dsl_generated.{self.stem}"}
        exec(compile_source(self.source, f"<icon-dsl {self.stem}>", "exec"), namespace)
        cls = namespace[self.class_name]
        assert isinstance(cls, type)
        return cls

    def write(self, directory: str | Path = "generated") -> Path:
        """Write `<directory>/<stem>.py` (atomically) and return its path."""
        out_dir = Path(directory)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.stem}.py"
        tmp = path.with_suffix(".py.tmp")
        tmp.write_text(self.source, encoding="utf-8")
        tmp.replace(path)
        return path


compile_source = compile  # the builtin, before `compile` below shadows it


def compile(spec: str | Path | Source) -> CompiledModule:
    """Check a spec and generate its standalone torch module."""
    from .codegen import generate
    from .known import recognise

    checked = check(spec)
    ir = checked.ir
    known = recognise(ir)
    source = generate(ir, known.display if known else None, _class_name(ir, known))
    stem = Path(ir.source.name).stem if ir.source.name.endswith(".icon") else ir.method
    return CompiledModule(
        source,
        _class_name(ir, known),
        _identifier(stem),
        ir,
        known.display if known else None,
        checked.notes,
    )


def _class_name(ir: IR, known: object) -> str:
    from .codegen.names import class_name
    from .known import CLASS_NAMES

    return CLASS_NAMES.get(ir.method) or class_name(ir.method)


def _identifier(stem: str) -> str:
    """A module / method name: an identifier that is not a Python keyword, nor the name of a
    module a generated file imports (a `torch.py` next to it would shadow torch)."""
    import keyword
    import sys

    out = "".join(ch if ch.isascii() and (ch.isalnum() or ch == "_") else "_" for ch in stem)
    out = out if out and not out[0].isdigit() else f"m_{out}"
    while keyword.iskeyword(out) or out in sys.stdlib_module_names or out == "torch":
        out += "_"
    return out


__all__ = ["parse", "check", "compile", "load_source", "SpecError", "Checked", "CompiledModule"]
