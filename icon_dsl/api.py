"""The Python API: parse, check and compile a spec.

Takes: spec text, a path, or a Source. Guarantees: `check` returns the IR of a spec with no errors
(notes attached) or raises SpecError carrying every diagnostic at once; `compile` returns the
standalone torch module generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .codegen import generate
from .codegen.names import class_name
from .diagnostics import Diagnostic, SpecError
from .ir import IR
from .known import CLASS_NAMES, recognise
from .pipeline import Checked, check, identifier, load_source, parse
from .source import Source


@dataclass
class CompiledModule:
    """A generated module: its source, and ways to load or write it."""

    source: str
    class_name: str
    stem: str
    ir: IR
    known_as: str | None
    notes: list[Diagnostic]

    def load(self) -> type[Any]:
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


def compile(spec: str | Path | Source, normaliser: str = "dense") -> CompiledModule:
    """Check a spec and generate its standalone torch module. normaliser "exact" makes its
    forward take the loss in row blocks (memory N x block_size), "sampled" keeps p on each
    row's nearest neighbours and samples q's normaliser (docs/performance.md, "Row blocks")."""
    checked = check(spec)
    ir = checked.ir
    known = recognise(ir)
    name = CLASS_NAMES.get(ir.method) or class_name(ir.method)
    source = generate(ir, known.display if known else None, name, normaliser)
    stem = Path(ir.source.name).stem if ir.source.name.endswith(".icon") else ir.method
    return CompiledModule(
        source, name, identifier(stem), ir, known.display if known else None, checked.notes
    )


__all__ = ["parse", "check", "compile", "load_source", "SpecError", "Checked", "CompiledModule"]
