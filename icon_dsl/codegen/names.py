"""Names in generated code: every identifier from a spec is sanitised here.

Guarantees: the result is a valid Python identifier, not a keyword, not a builtin nor an
nn.Module attribute, and not one of the names the generated module itself uses. Text from a spec
can never become code: `spec_text` is the one way any spec text reaches a generated module.
"""

from __future__ import annotations

import builtins
import keyword
import re

_RESERVED = {
    "self", "z", "x", "y", "index", "modality", "side", "torch", "nn", "F", "math", "dist",
    "Tensor", "p", "q", "log_q", "log_p", "keep", "eye", "diag", "n", "rows", "inputs", "world",
    "offset", "gather", "validate", "block_size", "last_dropped_rows", "divergence",
    "distributions", "build_mapper", "embedding_dim", "adjacency", "prototypes", "INPUTS",
    "MAPPER_INPUT", "KNOWN_AS", "a", "b", "c", "u", "lse", "positives", "count",
}  # fmt: skip
_BUILTINS = set(dir(builtins))

# The public attributes of torch.nn.Module (torch 2.13; a test checks this list still covers
# them) and `training`, which each instance sets: a hyperparameter attribute must not shadow one.
# Listed, not read from torch, so that compiling a spec does not import torch.
NN_MODULE_ATTRIBUTES = {
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children",
    "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward",
    "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "half", "ipu",
    "load_state_dict", "modules", "mtia", "named_buffers", "named_children", "named_modules",
    "named_parameters", "parameters", "register_backward_hook", "register_buffer",
    "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_",
    "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train",
    "training", "type", "xpu", "zero_grad",
}  # fmt: skip


def identifier(name: str) -> str:
    """A safe attribute / keyword-argument name for a spec name."""
    clean = re.sub(r"\W", "_", name, flags=re.ASCII)
    if not clean or clean[0].isdigit() or clean[0] == "_":
        # the module's own helpers and private methods start with "_": never shadow them
        clean = "h" + clean if clean.startswith("_") else "h_" + clean
    while (
        keyword.iskeyword(clean)
        or clean in _RESERVED
        or clean in NN_MODULE_ATTRIBUTES
        or clean in _BUILTINS
    ):
        clean += "_"
    return clean


def class_name(method: str) -> str:
    """CamelCase class name: simclr -> Simclr (known methods carry their own, e.g. SimCLR)."""
    parts = re.split(r"[^A-Za-z0-9]+", method)
    camel = "".join(p[:1].upper() + p[1:] for p in parts if p)
    if not camel or camel[0].isdigit():
        camel = "Method" + camel
    if keyword.iskeyword(camel) or camel in ("Tensor", "Module"):
        camel += "Objective"
    return camel


def spec_text(text: str) -> str:
    """Spec text made inert for every place in a generated module that carries text.

    This is the one escaping path: comments, docstrings and "..." string literals all take
    their spec text (titles, names, file names, formulas, source lines) from here. Backslash,
    double quote and every character outside printable ASCII (new lines, NUL, other control
    characters, non-ASCII letters) become Python escapes, so the result is one line of
    printable ASCII that can neither end a comment nor close a string, and inside a string or
    docstring its value is exactly `text`. Jinja never renders a value twice, so template
    syntax in the text stays text.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch in ("\\", '"'):
            out.append("\\" + ch)
        elif 32 <= code < 127:
            out.append(ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def comment(text: str) -> str:
    """A # comment line carrying `text`."""
    return "# " + spec_text(text)


def string_literal(text: str) -> str:
    """A "..." Python string literal whose value is `text`."""
    return f'"{spec_text(text)}"'
