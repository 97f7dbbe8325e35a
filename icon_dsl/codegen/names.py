"""Names in generated code: every identifier from a spec is sanitised here.

Guarantees: the result is a valid Python identifier, not a keyword, not a builtin nor an
nn.Module attribute, and not one of the names the generated module itself uses; text from a spec
can never become code.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Iterable

import torch

# Names a hyperparameter must not take: the module's imports, the other constructor arguments
# (validate, gather, ...), the loss class's own attributes and methods, and the locals of
# __init__ (n, dim), where hyperparameters are bare names.
_RESERVED = {
    "self", "z", "x", "y", "index", "modality", "side", "torch", "nn", "F", "math", "dist",
    "Tensor", "annotations", "p", "q", "log_q", "log_p", "keep", "eye", "diag", "n", "dim",
    "rows", "inputs", "world", "offset", "gather", "validate", "block_size", "cache_p",
    "last_dropped_rows", "forward", "divergence", "distributions", "build_mapper",
    "embedding_dim", "adjacency", "prototypes", "INPUTS", "MAPPER_INPUT", "KNOWN_AS", "a", "b",
    "c", "u", "lse", "positives", "count",
}  # fmt: skip
# Module-level names of a generated module that a class name could hide (`class F` would hide
# torch.nn.functional): every other module-level name starts with "_".
_MODULE_NAMES = {"F", "Tensor", "Module", "annotations", "dist", "math", "nn", "torch"}
_BUILTINS = set(dir(builtins))

_MODULE_ATTRS = set(dir(torch.nn.Module))


def identifier(name: str) -> str:
    """A safe attribute / keyword-argument name for a spec name."""
    clean = re.sub(r"\W", "_", name, flags=re.ASCII)
    if not clean or clean[0].isdigit() or clean[0] == "_":
        # the module's own helpers and private methods start with "_": never shadow them
        clean = "h" + clean if clean.startswith("_") else "h_" + clean
    while _taken(clean):
        clean += "_"
    return clean


def _taken(name: str) -> bool:
    return (
        keyword.iskeyword(name) or name in _RESERVED or name in _MODULE_ATTRS or name in _BUILTINS
    )


def identifiers(spec_names: Iterable[str]) -> dict[str, str]:
    """Safe, distinct Python names for a spec's hyperparameters, deterministic in the set.

    A name that is already safe keeps itself; the others are renamed (`identifier`) and, where
    that lands on a name already given (`self` next to `self_`, `_x` next to `h_x`), suffixed
    with "_" until free: two hyperparameters never share a constructor argument.
    """
    ordered = sorted(set(spec_names))
    out = {name: name for name in ordered if identifier(name) == name}
    given = set(out.values())
    for name in ordered:
        if name in out:
            continue
        python = identifier(name)
        while python in given or _taken(python):
            python += "_"
        out[name] = python
        given.add(python)
    return out


def class_name(method: str) -> str:
    """CamelCase class name: simclr -> Simclr (known methods carry their own, e.g. SimCLR)."""
    parts = re.split(r"[^A-Za-z0-9]+", method)
    camel = "".join(p[:1].upper() + p[1:] for p in parts if p)
    if not camel or camel[0].isdigit():
        camel = "Method" + camel
    if keyword.iskeyword(camel) or camel in _MODULE_NAMES:
        camel += "Objective"
    return camel


def safe_comment(text: str) -> str:
    """Text for a # comment: one line, printable ASCII only."""
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text.replace("\n", " "))


def docstring_text(text: str) -> str:
    """Text safe inside a triple-quoted docstring: no way to close the string early.

    Backslashes and double quotes are escaped, and anything outside printable ASCII becomes a
    \\u or \\U escape, so the docstring's value is exactly the text.
    """
    out = []
    for ch in text:
        if ch in ("\\", '"'):
            out.append("\\" + ch)
        elif ch == "\n" or 32 <= ord(ch) < 127:
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)
