"""What a registry entry is: a Block, its Args, their kinds and Domains.

registry.py holds the entries themselves (the vocabulary, as data) and re-exports these names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import sympy as sp

# -- argument kinds and domains -----------------------------------------------------------------

ArgKind = Literal[
    "real",  # a number or a hyperparameter name
    "int",  # a positive integer (or a hyperparameter name)
    "choice",  # one of `choices`, written as a bare name: metric=cosine
    "bool",  # true / false
    "vector",  # x, a side input, or f(x): N x D
    "labels",  # y
    "index",  # index: views of one sample share it
    "modality",  # modality: 0 / 1
    "columns",  # prototypes(n): learned class columns
    "dist",  # a distribution
    "weights",  # raw nonnegative weights (a kernel)
]

Role = Literal["distribution", "weights", "divergence", "mapper", "columns"]

REQUIRED = object()


@dataclass(frozen=True)
class Domain:
    """An interval of allowed values for a numeric argument."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def contains(self, value: float) -> bool:
        if self.integer and value != int(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def describe(self, name: str) -> str:
        """`sigma > 0`, `0 <= alpha <= 1`, `k a positive integer`."""
        if self.integer and self.lo >= 1:
            if self.hi < math.inf:
                return f"{name} an integer from {_num(self.lo)} to {_num(self.hi)}"
            return f"{name} a positive integer"
        lo_op = "<" if self.lo_open else "<="
        hi_op = "<" if self.hi_open else "<="
        if self.lo > -math.inf and self.hi < math.inf:
            return f"{_num(self.lo)} {lo_op} {name} {hi_op} {_num(self.hi)}"
        if self.lo > -math.inf:
            return f"{name} {'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi < math.inf:
            return f"{name} {'<' if self.hi_open else '<='} {_num(self.hi)}"
        return f"{name} a real number"

    def intersect(self, other: Domain) -> Domain:
        """The tighter of both bounds; at equal bounds an open end is the tighter."""
        lo, lo_open = max((self.lo, self.lo_open), (other.lo, other.lo_open))
        hi, hi_closed = min((self.hi, not self.hi_open), (other.hi, not other.hi_open))
        return Domain(lo, hi, lo_open, not hi_closed, self.integer or other.integer)


def _num(v: float) -> str:
    return short_number(v)


def short_number(value: float) -> str:
    """The shortest text that reads back as exactly `value`: 2, 0.5, 1e15 (not
    1000000000000000.0), 1e-30."""
    if not math.isfinite(value):
        return repr(value)
    text = str(int(value)) if value == int(value) and abs(value) < 1e7 else repr(value)
    for digits in range(17):
        mantissa, exponent = f"{value:.{digits}e}".split("e")
        short = f"{mantissa}e{int(exponent)}"
        if float(short) == value:
            return short if len(short) < len(text) else text
    return text


@dataclass(frozen=True)
class Arg:
    name: str
    kind: ArgKind
    default: object = REQUIRED
    domain: Domain | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


# How a distribution is computed: log-weights normalised per row (a kernel, or normalize of raw
# weights; positive weights, so the row can be restricted to any support before normalising),
# an indicator (uniform over a mask), a one-hot column index, or dense probabilities: the forms
# code generation emits (`Val.kind` in codegen/values.py). The checks read it: a cross-modal p
# restricts q to the other modality, which only a "logits" q can be.
Rep = Literal["logits", "mask", "onehot", "prob"]

METRICS = ("euclidean", "cosine", "dot")

_D2 = sp.Symbol("d2", nonnegative=True)


def _sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, positive=True)


@dataclass(frozen=True)
class Block:
    name: str
    role: Role
    args: tuple[Arg, ...]
    doc: str
    formula: str  # the math, as shown in docs and `explain`
    family: str  # the periodic-table family: a column (p) or row (q) name
    rep: Rep | None = None
    differentiable: bool = True
    may_be_empty: bool = False
    diagonal: bool | None = False  # j = i in the support by default (None: not pairwise)
    pairwise: bool = False  # takes `diagonal=` and builds an N x N matrix from a vector
    accepts_columns: bool = False  # `gaussian(f(x), prototypes(n))`
    # log of the kernel's weight as a sympy formula of d2 and the arguments (kernels only)
    log_weight: Callable[..., sp.Expr] | None = None
    metrics: tuple[str, ...] = METRICS
    parametric: bool = True  # mappers: does transform() work on new points
    variadic: bool = False  # takes two or more of its one argument: union(d1, d2, ...)
    cross_modal: bool = False  # its support, and so q's, is the other modality (CLIP)
    full_support: bool = False  # nonzero everywhere on its support (KL(q || p) stays finite)
    # Divergences. `symbol`: the short form shown in titles and reports. `mass_from`: the side
    # whose mass the other must cover or the divergence is infinite ("p" for KL(p || q), "q"
    # for KL(q || p), "" when it is bounded). `trains_on_cross_entropy`: with a fixed p the
    # training loss may drop H(p). `rows_code`: generated lines that turn p, log_p and log_q
    # (dense, this process's rows) into `rows`, the divergence of each anchor.
    symbol: str = ""
    mass_from: Literal["p", "q", ""] = ""
    trains_on_cross_entropy: bool = False
    rows_code: tuple[str, ...] = ()
    # Mappers. `summary`: what the generated `_Mapper` is, in a few words. `init_code`: the
    # lines of its __init__ that build `self.net`, with {dim}, {hidden} and {depth} filled in
    # from the spec (a non-parametric mapper reads sample indices; the others, features).
    summary: str = ""
    init_code: tuple[str, ...] = ()

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name), None)

    @property
    def is_kernel(self) -> bool:
        """A kernel: a distribution normalised from the weight exp(log_weight(d2, ...))."""
        return self.log_weight is not None

    def weight_formula(self) -> sp.Expr | None:
        """The kernel's weight w(d2) in sympy, with its arguments as positive symbols."""
        if self.log_weight is None:
            return None
        syms = {a.name: _sym(a.name) for a in self.args if a.kind in ("real", "int")}
        return sp.exp(self.log_weight(_D2, syms))
