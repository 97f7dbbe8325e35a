"""Emission: a checked IR -> the generated module's source; the template only fills holes.

Takes: a checked IR. Guarantees: deterministic Python source for a standalone torch module that
follows the generated-module contract (docs/design.md): one public nn.Module named after the
method, `forward`, `distributions`, `divergence`, `build_mapper`. Every decision is made by the
plan (plan.py: node rules in nodes.py, forward's forms in strategies.py); this module renders it.
"""

from __future__ import annotations

import textwrap
from functools import cache

import jinja2

from .. import disk_cache
from ..describe import formulas
from ..ir import IR
from ..large_data import NEIGHBOUR_NEGATIVES
from . import names
from .layout import assign, assignment_lines, call, define, fits, returns
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


#: The comment above the helpers: the module's own code (the public class) ends there.
BANNER = "# Helpers used above"
#: Helpers written only where the public class calls them.
_OPTIONAL = frozenset({"_diagonal", "_gather"})


def render(p: Plan) -> str:
    params = ["self", "z: Tensor"] + (["*"] if p.inputs else [])
    params += [f"{name}: Tensor" for name in p.inputs]
    inputs_tuple = ", ".join(f'"{n}"' for n in p.inputs)
    forward_uses_divergence = not (p.fast or p.neighbour or (p.cross_entropy and not p.p_learned))
    context = {
        "plan": p,
        "text": names.spec_text,
        "string": names.string_literal,
        "define": lambda name, returns, extra=(): define(name, params + list(extra), returns),
        "def_line": define,
        "init_def": define("__init__", _init_params(p), "None"),
        "class_doc": _class_doc(p),
        "summary": _summary(p),
        "call": call,
        "check": _check,
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
        "forward_uses_divergence": forward_uses_divergence,
        **_block_context(p),
    }
    template = _env().get_template("module.py.j2")
    # helpers only where the class calls them: a draft with all of them tells which
    draft = template.render(imports="", uses=_OPTIONAL, **context)
    own = draft[: draft.index(BANNER)]
    context["uses"] = {name for name in _OPTIONAL if f"{name}(" in own}
    draft = template.render(imports="", **context)
    return template.render(imports=_imports(draft), **context).rstrip() + "\n"


def _block_context(p: Plan) -> dict[str, str]:
    """The calls and signatures of the row-block methods: each takes the block's first column
    (offset), z's rows and columns, and each input's rows and columns."""
    if p.blocks is None:
        return {}
    inputs = p.blocks["inputs"]
    typed = ["offset: int", "z: Tensor", "z_all: Tensor"]
    typed += [a for n in inputs for a in (f"{n}: Tensor", f"{n}_all: Tensor")]
    block = ["offset + first", "z[first:last]", "z_all"]
    block += [a for n in inputs for a in (f"{n}[first:last]", f"{n}_all")]
    whole = ["offset", "z", "z_all", *(a for n in inputs for a in (n, f"{n}_all"))]
    betas = ["betas"] if p.blocks["calibrations"] else []
    rows = "tuple[Tensor, Tensor]" if p.blocks["keep"] else "Tensor"
    return {
        "block_call": call(
            "checkpoint", ["self._block_rows", *betas, *block, "use_reentrant=False"], 12, "block"
        ),
        "define_block": define(
            "_block_rows", ["self", *(b + ": _Betas" for b in betas), *typed], rows
        ),
        "sparse_call": call("self._sparse_p", ["fixed_key", *whole], 8, "columns, p"),
        "define_sparse": define(
            "_sparse_p", ["self", "key: _Key", *typed], "tuple[Tensor, Tensor]"
        ),
        "p_block_call": call("self._p_block", block, 16, "p"),
        "define_p_block": define("_p_block", ["self", *typed], "Tensor"),
    }


def _init_params(p: Plan) -> list[str]:
    """The constructor's keyword-only arguments: the hyperparameters, then the options."""
    params = ["self", "*", *(f"{h['name']}: {h['type']}{h['default']}" for h in p.hypers)]
    if p.graph:
        params.append("adjacency: Tensor")
    if p.prototypes:
        params.append(f"embedding_dim: int = {p.prototypes['dim']}")
    if p.fast:
        params.append("block_size: int | None = None")
    if p.blocks:
        params.append("block_size: int = 1024")
    if p.sampled:
        params += [f"negatives: int = {NEIGHBOUR_NEGATIVES}", "neighbours: int | None = None"]
    if p.cache_p:
        params.append("cache_p: bool = True")
    return [*params, "validate: bool = True", "gather: bool = True"]


def _summary(p: Plan) -> str:
    """The module docstring's first line: the class, and the name the method is known by (on
    a line of its own when both do not fit on one)."""
    if not p.known_as:
        return f"{p.class_name}: an I-Con objective generated by icon-dsl."
    known = names.spec_text(p.known_as)
    one_line = f"{p.class_name}: the I-Con objective known as {known}."
    if fits(one_line, 3):
        return one_line
    return f"{p.class_name}: an I-Con objective generated by icon-dsl.\n\nKnown as: {known}"


def _class_doc(p: Plan) -> list[str]:
    """The public class's docstring after its first line, wrapped (never inside an escape),
    the closing quotes on its last line."""
    text = "The constructor takes `adjacency`, the graph's weights over the whole dataset. "
    text = text if p.graph else ""
    text += "forward(z, ...) is the training loss"
    if p.cross_entropy and not p.p_learned:
        text += " (the cross-entropy H(p, q): KL minus the constant H(p))"
    text += (
        f", divergence(z, ...) the {p.divergence} divergence, distributions(z, ...) dense p "
        'and q. Empty rows of p are left out of the mean and counted in `last_dropped_rows`."""'
    )
    return textwrap.wrap(text, 84, break_long_words=False, break_on_hyphens=False)


def _check(cond: str, name: str, value: str, domain: str) -> str:
    """`if not cond: raise _invalid(name, value, domain)`, laid out as ruff format lays it out
    (a condition of several parts in parentheses, split before each `and` if need be)."""
    parts = cond.split(" and ")
    head = f"        if not {cond if len(parts) == 1 else f'({cond})'}:"
    if not fits(head):
        inner = [cond] if fits(cond, 12) else [parts[0], *(f"and {part}" for part in parts[1:])]
        head = "\n".join(
            ["        if not (", *(f"            {line}" for line in inner), "        ):"]
        )
    return head + "\n" + call("raise _invalid", [name, value, domain], indent=12)


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
    if "checkpoint(" in draft:
        lines.append("from torch.utils.checkpoint import checkpoint")
    return "\n".join(lines)


def generate(
    ir: IR, known_as: str | None = None, class_name: str | None = None, normaliser: str = "dense"
) -> str:
    """Python source of the generated module for a checked IR; normaliser "exact" computes
    forward in row blocks (codegen/blocks.py)."""
    return render(plan(ir, known_as, class_name, normaliser))
