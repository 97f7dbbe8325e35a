"""docs/language.md: statements, inputs, every block of the registry, metrics, mixtures, kernels,
the checks and the grammar."""

from __future__ import annotations

from .. import registry as reg
from ..diagnostics import CODES
from ..parser import grammar_text
from .common import GENERATED, GENERATED_END, table_cell

_INPUT_DOCS = {
    "x": "the features, N x D floats; `f(x)` is the mapper applied to them",
    "side": "side information, N x D' floats (captions, guidance features)",
    "y": "integer class labels, N",
    "index": "the sample id, N integers: views of one sample share it",
    "modality": "0 / 1 per item, for cross-modal pairs",
}

_KIND_DOCS = {
    "vector": "N x D floats",
    "labels": "N integer labels",
    "index": "N integer sample ids",
    "modality": "N values in {0, 1}",
}

_ARG_KINDS = {
    "real": "number",
    "int": "integer",
    "choice": "choice",
    "bool": "`true` / `false`",
    "vector": "vector: "
    + ", ".join([f"`{n}`" for n, k in reg.INPUTS.items() if k == "vector"] + ["`f(x)`"]),
    "labels": "labels: `y`",
    "index": "`index`",
    "modality": "`modality`",
    "columns": "`prototypes(n)`",
    "dist": "distribution",
    "weights": "raw weights: a user kernel",
}

_METRIC_DOCS = {
    "euclidean": "squared Euclidean distance, d2 = |a - b|^2 (the default)",
    "cosine": "on L2-normalised vectors, d2 = 2 - 2 cos(a, b)",
    "dot": "d2 = -2 a.b, so a Gaussian's weight is exp(a.b / temperature)",
}

_ROLES: list[tuple[reg.Role, str, str]] = [
    (
        "distribution",
        "Distributions",
        "Each is row-stochastic over j != i unless stated. p and q are built from these.",
    ),
    ("weights", "Raw weights", "Nonnegative weights; wrap them in `normalize(...)`."),
    ("columns", "Columns", "Learned columns for N x n distributions over prototypes."),
    (
        "divergence",
        "Divergences",
        "What `loss = ...` compares p and q with; it is always written with the spec's own p and "
        "q, as in `loss = js(p, q)`.",
    ),
    ("mapper", "Mappers", "What `mapper = ...` builds: the model f that gives z = f(x)."),
]


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _default(arg: reg.Arg) -> str:
    value = arg.default
    if value is reg.REQUIRED:
        return "required"
    if value is None:
        return "not given"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)):
        return f"`{_num(float(value))}`"
    return f"`{value}`"


def _domain(arg: reg.Arg) -> str:
    if arg.choices:
        return ", ".join(f"`{c}`" for c in arg.choices)
    if arg.domain is not None:
        return arg.domain.describe(arg.name)
    return ""


def _signature(block: reg.Block) -> str:
    if block.variadic:
        (arg,) = block.args
        return f"{block.name}({arg.name}1, {arg.name}2, ...)"
    parts = []
    for arg in block.args:
        if arg.required:
            parts.append(arg.name)
        elif arg.default is None:
            parts.append(f"{arg.name}=...")
        else:
            parts.append(f"{arg.name}={_default(arg).strip('`')}")
    if block.accepts_columns:
        parts.insert(1, "[prototypes(n)]")
    return f"{block.name}({', '.join(parts)})"


def _facts(block: reg.Block) -> list[str]:
    facts = []
    if block.role == "distribution":
        if any(a.kind in ("dist", "weights") for a in block.args):
            facts.append("support: that of its argument")
        elif block.name == "classes":
            facts.append("support: N x n class columns")
        elif block.diagonal is True:
            facts.append("support: N x N, j = i included")
        elif block.arg("diagonal") is not None:
            facts.append("support: N x N, j != i; `diagonal=true` includes j = i")
        elif block.diagonal is False:
            facts.append("support: N x N, j != i")
        if block.accepts_columns:
            facts.append("with `prototypes(n)` as its second argument: N x n, learned columns")
        if block.may_be_empty:
            facts.append("rows may be empty: they are dropped from the mean and counted")
        if not block.differentiable:
            facts.append("not differentiable: it cannot carry q's gradient (use it in p)")
    if block.role == "mapper" and not block.parametric:
        facts.append("non-parametric: one row per training sample, no transform of new points")
    return facts


#: The meaning of an argument the registry gives no doc for, by name or by kind.
_ARG_FALLBACK = {
    "dim": "output dimension",
    "vector": "the vectors compared",
    "labels": "the class labels",
    "index": "the sample ids",
    "modality": "the modality of each item",
    "dist": "a distribution",
    "weights": "raw nonnegative weights",
}


def _block_section(block: reg.Block) -> list[str]:
    out = [f"### `{block.name}`", "", f"`{_signature(block)}`", "", block.doc, ""]
    out += ["```", block.formula, "```", ""]
    for fact in _facts(block):
        out.append(f"- {fact}")
    if _facts(block):
        out.append("")
    if block.args:
        out += [
            "| argument | kind | default | domain | meaning |",
            "|---|---|---|---|---|",
        ]
        for arg in block.args:
            row = [
                f"`{arg.name}`",
                _ARG_KINDS.get(arg.kind, arg.kind),
                _default(arg),
                _domain(arg),
                arg.doc or _ARG_FALLBACK.get(arg.name, _ARG_FALLBACK.get(arg.kind, "")),
            ]
            out.append("| " + " | ".join(table_cell(c) for c in row) + " |")
        out.append("")
    return out


_INTRO = """\
# The icon-dsl language

A spec names a supervisory distribution p, a learned distribution q and a mapper; icon-dsl checks
that they are well-formed and generates a standalone torch module that trains the method.

```
# specs/tsne.icon
method tsne "t-SNE (van der Maaten and Hinton, 2008)"
mapper = table(dim=2)
p = gaussian(x, perplexity=30)
q = student_t(f(x), dof=1)
loss = kl(p, q)
```"""

_STATEMENTS = """\
## Statements

Statements end at a new line or `;`; `#` starts a comment that runs to the end of the line. Inside
`( )` and `[ ]` new lines are ignored, so a long call may span lines; a `\\` at the end of a line
continues it. `p = gaussian(x, sigma) ; q = student_t(f(x)) ; mapper = table` is a whole spec.

| statement | meaning |
|---|---|
| `method NAME ["title"]` | the method's name (default: the file's stem) and a title citing its source |
| `mapper = ...` | the model f; required |
| `p = ...` | the supervisory distribution; required |
| `q = ...` | the learned distribution; required |
| `loss = ...` | the divergence; optional, default `kl(p, q)` |
| `param NAME [in [LO, HI]] [= DEFAULT]` | a hyperparameter: its domain and its default |
| `kernel NAME(d2, ARGS...) = EXPR` | a user kernel: raw weights as a formula of d2 |

Expressions are numbers (`2`, `0.5`, `.5`, `1e-3`), names, `"strings"` (titles only), calls with
positional then keyword arguments (`gaussian(x, sigma=0.5)`), and arithmetic: `+ - * /`, unary
`-`, and powers written `^` or `**` (right-associative, binding tighter than unary minus).

A bare name that is neither an input, a block of the language, nor a declared `param` is a
hyperparameter without default: it becomes a required keyword argument of the generated module's
constructor. A hyperparameter takes the domain of every slot it fills (`sigma=s` makes s > 0); a
`param` may narrow it further with `in [LO, HI]`."""

_MIXTURES = """\
## Mixtures

`a * d1 + b * d2 + ...` mixes distributions over the same support with weights that are numbers,
hyperparameters or arithmetic of them; a weight may also divide (`d / 2`). The checker proves with
sympy that every weight is nonnegative over the hyperparameters' domains and that the weights sum
to 1, so `a * d1 + (1 - a) * d2` needs `param a in [0, 1]`. Distributions cannot be subtracted.

```
param a in [0, 1] = 0.5
p = a * label(y) + (1 - a) * augmentation(index)
```"""

_KERNELS = """\
## User kernels

```
kernel cauchy(d2, gamma) = 1 / (1 + d2 / gamma^2)
q = normalize(cauchy(f(x), 1.5, metric=cosine))
```

A kernel's first argument is `d2`, the squared distance (>= 0); the others are widths (from 1e-15
to 1e15, like sigma) given at each use, positionally or by keyword. The body uses numbers, its arguments,
`+ - * / ^` and {functions}; it is parsed into sympy node by node, never evaluated as text. Each
use also takes `metric=` ({metrics}) and `diagonal=`.

A kernel gives raw weights, not a distribution: using one as p or q without `normalize(...)` is an
error (`not-row-stochastic`), a kernel sympy cannot prove nonnegative for every d2 >= 0 and
positive arguments is an error (`kernel-not-nonnegative`), and so is one whose formula does not
use d2 (`kernel-definition`)."""

_CHECKED = """\
## What is checked

Every spec is checked before any code is generated, and every problem is reported at once, each
with `file:line:col`, the source line, carets under the culprit and, where a fix is known, a help
line. Each diagnostic has a stable code; [errors.md](errors.md) shows an example of each."""


def _functions() -> str:
    return ", ".join(f"`{name}`" for name in reg.KERNEL_FUNCTIONS)


def language_markdown() -> str:
    """docs/language.md: statements, inputs, every block, metrics, mixtures, kernels, checks."""
    out = [GENERATED + GENERATED_END, "", _INTRO, "", _STATEMENTS, ""]
    out += ["## Inputs", "", "| name | value |", "|---|---|"]
    for name, kind in reg.INPUTS.items():
        out.append(f"| `{name}` | {_INPUT_DOCS.get(name, _KIND_DOCS.get(kind, kind))} |")
    out += [
        f"| `{reg.MAPPER_OUTPUT}(x)` | the mapper's output z, the embeddings the module is given |",
        "",
        "Bare constants: " + ", ".join(f"`{c}`" for c in reg.CONSTANTS) + ".",
        "",
    ]
    for role, title, intro in _ROLES:
        blocks = reg.blocks(role)
        if not blocks:
            continue
        out += [f"## {title}", "", intro, ""]
        for block in blocks:
            out += _block_section(block)
    out += ["## Metrics", "", "Distances are squared.", "", "| metric | d2 |", "|---|---|"]
    out += [f"| `{m}` | {table_cell(_METRIC_DOCS.get(m, ''))} |" for m in reg.METRICS]
    out += ["", "| block | metrics |", "|---|---|"]
    for block in reg.blocks():
        metric = block.arg("metric")
        if metric is not None:
            out.append(f"| `{block.name}` | {', '.join(f'`{c}`' for c in metric.choices)} |")
    out += ["", _MIXTURES, ""]
    out += [
        _KERNELS.format(functions=_functions(), metrics="`euclidean` or `cosine`"),
        "",
        _CHECKED,
        "",
        "| code | meaning |",
        "|---|---|",
    ]
    out += [
        f"| [`{code}`](errors.md#{code}) | {table_cell(text)} |" for code, text in CODES.items()
    ]
    out += [
        "",
        "## Grammar",
        "",
        "The grammar (Lark, LALR) is the reference for the syntax; it is "
        "`icon_dsl/grammar.lark`, in full:",
        "",
        "```lark",
        grammar_text().rstrip("\n"),
        "```",
    ]
    return "\n".join(out) + "\n"
