"""Emission: a checked IR -> the generated module's source; the template only fills holes.

Takes: a checked IR. Guarantees: deterministic Python source for a standalone torch module that
follows the generated-module contract (docs/design.md): one public nn.Module named after the
method, `forward`, `distributions`, `divergence`, `build_mapper`. Every decision is made by the
plan (plan.py: node rules in nodes.py, forward's forms in strategies.py); this module renders it.
"""

from __future__ import annotations

from functools import cache

import jinja2

from .. import disk_cache
from ..describe import formulas
from ..ir import IR
from . import names
from .layout import assign, assignment_lines, call, define, returns
from .layout import operands as _operands
from .plan import Plan, plan
from .strategies import has_fast_path, has_neighbour_path

# The names other modules have imported from here, kept where they were.
__all__ = [
    "generate",
    "render",
    "formulas",
    "has_fast_path",
    "has_neighbour_path",
    "assignment_lines",
    "_operands",
]


@cache
def _env() -> jinja2.Environment:
    # compiled templates are kept on disk: compiling them took a tenth of a command's time
    folder = disk_cache.private_folder("templates")
    return jinja2.Environment(
        loader=jinja2.PackageLoader("icon_dsl", "codegen/templates"),
        bytecode_cache=None if folder is None else jinja2.FileSystemBytecodeCache(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(p: Plan) -> str:
    params = ["self", "z: Tensor"] + (["*"] if p.inputs else [])
    params += [f"{name}: Tensor" for name in p.inputs]
    inputs_tuple = ", ".join(f'"{n}"' for n in p.inputs)
    context = {
        "plan": p,
        "text": names.spec_text,
        "string": names.string_literal,
        "define": lambda name, returns, extra=(): define(name, params + list(extra), returns),
        "call": call,
        "assign": assign,
        "returns": returns,
        "inputs_tuple": f"({inputs_tuple},)" if len(p.inputs) == 1 else f"({inputs_tuple})",
        "call_args": "".join(f", {name}={name}" for name in p.inputs),
        "terms_call": lambda target, gather: call(
            "self._terms",
            ["z", *(f"{n}={n}" for n in p.inputs), *(["gather=self.gather"] if gather else [])],
            target=target,
        ),
        "inputs_dict": "{" + ", ".join(f'"{n}": {n}' for n in p.inputs) + "}",
        "p_terms_call": lambda target, gather: call(
            "self._p_terms",
            ["z", *(f"{n}={n}" for n in p.inputs), f"gather={gather}"],
            target=target,
        ),
    }
    template = _env().get_template("module.py.j2")
    draft = template.render(imports="", **context)
    return template.render(imports=_imports(draft), **context).rstrip() + "\n"


def _imports(draft: str) -> str:
    """Only the imports the module uses, so the file is lint-clean."""
    lines = ["import functools"]
    if "math." in draft:
        lines.append("import math")
    lines.append("from collections.abc import Callable")
    lines.append("from typing import TypeVar\n")
    lines.append("import torch")
    if "dist." in draft:
        lines.append("import torch.distributed as dist")
    if "F." in draft:
        lines.append("import torch.nn.functional as F")
    lines.append("from torch import Tensor, nn")
    return "\n".join(lines)


def generate(ir: IR, known_as: str | None = None, class_name: str | None = None) -> str:
    """Python source of the generated module for a checked IR."""
    return render(plan(ir, known_as, class_name))
