"""The registry: every kernel, modifier, mapper and divergence of the language, as data.

Takes: nothing. Guarantees: one `Block` per name, holding its arguments (kinds, defaults, domains),
what it yields (a row-stochastic distribution, raw weights, a mapper, ...), its shape and diagonal
rule, its sympy weight formula where it is a kernel, and the torch expression codegen emits for it.
The parser's "did you mean", the checks, the interpreter, codegen, the enumerator and
docs/language.md all read this table: adding a kernel is one entry here plus tests.
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


POSITIVE = Domain(lo=0.0, lo_open=True)
NONNEGATIVE = Domain(lo=0.0)
UNIT = Domain(lo=0.0, hi=1.0)
POSITIVE_INT = Domain(lo=1.0, integer=True)
# Sizes a module can allocate (embedding width, hidden width) and counts it loops over: beyond
# these, torch fails with an overflow or runs out of memory.
SIZE = Domain(lo=1.0, hi=65536.0, integer=True)
COUNT = Domain(lo=1.0, hi=2.0**20, integer=True)
DEPTH = Domain(lo=1.0, hi=100.0, integer=True)
STEPS = Domain(lo=1.0, hi=1000.0, integer=True)
# Kernel widths: the logit scale 1 / (2 sigma^2) (or 1 / (dof scale^2)) stays below 1e30, so
# logits, the loss and its gradients are finite in float32 for distances up to ~1e8, and the
# width's square stays a finite float64.
WIDTH = Domain(lo=1e-15, hi=1e15)
SQUARED_WIDTH = Domain(lo=1e-30, hi=1e30)
REAL = Domain()


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


# -- blocks -------------------------------------------------------------------------------------

# How a distribution is computed: log-weights normalised per row (a kernel, or normalize of raw
# weights; positive weights, so the row can be restricted to any support before normalising),
# an indicator (uniform over a mask), a one-hot column index, or dense probabilities: the forms
# code generation emits (`Val.kind` in codegen/emit.py). The checks read it: a cross-modal p
# restricts q to the other modality, which only a "logits" q can be.
Rep = Literal["logits", "mask", "onehot", "prob"]

METRICS = ("euclidean", "cosine", "dot")

# The functions a user kernel's formula may call (`kernel k(d2) = exp(-sqrt(d2))`), by the name
# the spec uses. Code generation prints them (codegen/printing.py), the interpreter evaluates
# them (sympy_torch.py), the docs list them.
KERNEL_FUNCTIONS: dict[str, Callable[[sp.Expr], sp.Expr]] = {
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "abs": sp.Abs,
}

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


_METRIC = Arg("metric", "choice", "euclidean", choices=METRICS, doc="how d2 is measured")
_DIAGONAL = Arg("diagonal", "bool", False, doc="include j = i in the support")


def _gaussian_log_weight(d2: sp.Expr, a: dict[str, sp.Expr]) -> sp.Expr:
    return -d2 / (2 * a["sigma"] ** 2)


def _student_log_weight(d2: sp.Expr, a: dict[str, sp.Expr]) -> sp.Expr:
    return -(a["dof"] + 1) / 2 * sp.log(1 + d2 / (a["dof"] * a["scale"] ** 2))


BLOCKS: dict[str, Block] = {}


def _register(block: Block) -> Block:
    assert block.name not in BLOCKS, block.name
    BLOCKS[block.name] = block
    return block


_register(
    Block(
        "gaussian",
        "distribution",
        (
            Arg("v", "vector", doc="the vectors compared: x, a side input or f(x)"),
            Arg("sigma", "real", 1.0, WIDTH, doc="kernel width"),
            Arg("temperature", "real", None, SQUARED_WIDTH, doc="sigma^2 = temperature"),
            Arg("perplexity", "real", None, Domain(lo=1.0, lo_open=False), doc="per-row sigma_i"),
            _METRIC,
            _DIAGONAL,
        ),
        doc="Gaussian (softmax) neighbours: SNE's p, SimCLR's q, cross-entropy's q over prototypes.",
        formula="w(i,j) = exp(-d2(i,j) / (2 sigma^2))",
        family="gaussian",
        full_support=True,
        rep="logits",
        pairwise=True,
        accepts_columns=True,
        log_weight=_gaussian_log_weight,
    )
)
_register(
    Block(
        "student_t",
        "distribution",
        (
            Arg("v", "vector"),
            Arg("dof", "real", 1.0, SQUARED_WIDTH, doc="degrees of freedom nu"),
            Arg("scale", "real", 1.0, WIDTH, doc="scale s"),
            Arg("metric", "choice", "euclidean", choices=("euclidean", "cosine"), doc="d2"),
            _DIAGONAL,
        ),
        doc="Student-t (Cauchy for dof=1) neighbours: t-SNE's q, harmonic loss over prototypes.",
        formula="w(i,j) = (1 + d2(i,j) / (dof scale^2))^(-(dof+1)/2)",
        family="student_t",
        full_support=True,
        rep="logits",
        pairwise=True,
        accepts_columns=True,
        log_weight=_student_log_weight,
        metrics=("euclidean", "cosine"),
    )
)
_register(
    Block(
        "knn",
        "distribution",
        (
            Arg("v", "vector"),
            Arg("k", "int", REQUIRED, COUNT, doc="number of neighbours"),
            Arg("metric", "choice", "euclidean", choices=("euclidean", "cosine"), doc="d2"),
        ),
        doc="Uniform over the k nearest neighbours j != i (LGSimCLR, DCD).",
        formula="p(j|i) = 1/k if j is among the k nearest neighbours of i",
        family="knn",
        rep="mask",
        differentiable=False,
        metrics=("euclidean", "cosine"),
    )
)
_register(
    Block(
        "label",
        "distribution",
        (Arg("y", "labels"),),
        doc="Uniform over the other items with the same label (SupCon). Rows may be empty.",
        formula="p(j|i) = 1[y_j = y_i] / #{k != i : y_k = y_i}",
        family="label",
        rep="mask",
        differentiable=False,
        may_be_empty=True,
    )
)
_register(
    Block(
        "augmentation",
        "distribution",
        (Arg("index", "index"),),
        doc="Uniform over the other views of the same sample (SimCLR). Rows may be empty.",
        formula="p(j|i) = 1[index_j = index_i] / #{k != i : index_k = index_i}",
        family="augmentation",
        rep="mask",
        differentiable=False,
        may_be_empty=True,
    )
)
_register(
    Block(
        "classes",
        "distribution",
        (Arg("y", "labels"), Arg("n", "int", REQUIRED, COUNT, doc="number of classes")),
        doc="One-hot over n class columns (cross-entropy's p): an N x n distribution.",
        formula="p(c|i) = 1[c = y_i]",
        family="classes",
        rep="onehot",
        differentiable=False,
        diagonal=None,
    )
)
_register(
    Block(
        "prototypes",
        "columns",
        (Arg("n", "int", REQUIRED, COUNT, doc="number of prototype columns"),),
        doc="n learned prototype vectors phi_c, parameters of the module: columns of q.",
        formula="phi_c, c = 1..n",
        family="prototypes",
        diagonal=None,
    )
)
_register(
    Block(
        "cluster",
        "distribution",
        (Arg("v", "vector", doc="soft assignments, rows summing to 1"),),
        doc="The cluster kernel of k-means and spectral clustering (j = i included).",
        formula="q(j|i) = sum_c v_ic v_jc / sum_k v_kc",
        family="cluster",
        rep="prob",
        diagonal=True,
    )
)
_register(
    Block(
        "uniform",
        "distribution",
        (_DIAGONAL,),
        doc="Uniform over the row's support.",
        formula="p(j|i) = 1 / #support",
        family="uniform",
        full_support=True,
        rep="mask",
        differentiable=False,
    )
)
_register(
    Block(
        "identity",
        "distribution",
        (),
        doc="All mass on j = i (PCA, as a limit).",
        formula="p(j|i) = 1[j = i]",
        family="identity",
        rep="mask",
        differentiable=False,
        diagonal=True,
    )
)
_register(
    Block(
        "normalize",
        "distribution",
        (Arg("w", "weights", doc="raw nonnegative weights"),),
        doc="Turn raw nonnegative weights into a row-stochastic distribution.",
        formula="p(j|i) = w(i,j) / sum_k w(i,k)",
        family="normalize",
        # full support only where the kernel's weight is provably positive (checks/shapes.py)
        rep="logits",
    )
)
_register(
    Block(
        "debias",
        "distribution",
        (Arg("d", "dist"), Arg("alpha", "real", REQUIRED, UNIT, doc="mass moved to uniform")),
        doc="(1 - alpha) d + alpha * uniform over the row's support (the paper's debiasing).",
        formula="p~(j|i) = (1 - alpha) p(j|i) + alpha / #support",
        family="debias",
        rep="prob",
    )
)
_register(
    Block(
        "cross_modal",
        "distribution",
        (Arg("index", "index"), Arg("modality", "modality")),
        doc="Uniform over partners in the other modality (CLIP, CMC); q's support becomes the "
        "other modality.",
        formula="p(j|i) = 1[index_j = index_i, modality_j != modality_i] / #partners",
        family="cross_modal",
        rep="mask",
        differentiable=False,
        may_be_empty=True,
        cross_modal=True,
    )
)
_register(
    Block(
        "graph",
        "distribution",
        (Arg("index", "index", doc="rows of the module's `adjacency` that the batch holds"),),
        doc="Random-walk normalised weights of a precomputed graph over the dataset (the module "
        "takes `adjacency=`, N_data x N_data), restricted to the batch. Rows may be empty.",
        formula="p(j|i) = A[i, j] / sum_k A[i, k], over the batch, j != i",
        family="graph",
        rep="prob",
        differentiable=False,
        may_be_empty=True,
    )
)
_register(
    Block(
        "walk",
        "distribution",
        (Arg("d", "dist"), Arg("steps", "int", 1, STEPS, doc="extra steps of the walk")),
        doc="Neighbour propagation: normalise(d + d^2 + ... + d^(steps+1)); the diagonal stays "
        "outside the support when d excludes it.",
        formula="p~ = normalise(P + P^2 + ... + P^(steps+1))",
        family="walk",
        rep="prob",
    )
)
_register(
    Block(
        "union",
        "distribution",
        (Arg("d", "dist"),),
        doc="Uniform over the union of the supports of two or more distributions.",
        formula="p(j|i) = 1[j in supp d1(.|i) or supp d2(.|i) ...] / #union",
        family="union",
        rep="mask",
        differentiable=False,
        variadic=True,
    )
)
_register(
    Block(
        "joint",
        "distribution",
        (Arg("d", "dist"),),
        doc="Joint normalisation (real t-SNE): a fixed-width kernel's weights over all pairs "
        "(w / sum w), or (P + P^T) / 2N for a row-stochastic P; one KL over the whole matrix.",
        formula="P = (P_c + P_c^T) / (2N);  Q = w / sum_{k != l} w_kl",
        family="joint",
        rep="prob",
    )
)
_register(
    Block(
        "kl",
        "divergence",
        (Arg("p", "dist"), Arg("q", "dist")),
        doc="Mean over anchors of KL(p(.|i) || q(.|i)); trains on the cross-entropy when p is fixed.",
        formula="L = (1/N) sum_i sum_j p(j|i) log(p(j|i) / q(j|i))",
        family="kl",
        diagonal=None,
    )
)
_register(
    Block(
        "reverse_kl",
        "divergence",
        (Arg("p", "dist"), Arg("q", "dist")),
        doc="Mean over anchors of KL(q(.|i) || p(.|i)): the exact form of k-means.",
        formula="L = (1/N) sum_i sum_j q(j|i) log(q(j|i) / p(j|i))",
        family="reverse_kl",
        diagonal=None,
    )
)
_register(
    Block(
        "js",
        "divergence",
        (Arg("p", "dist"), Arg("q", "dist")),
        doc="Mean over anchors of the Jensen-Shannon divergence, m = (p + q) / 2.",
        formula="L = (1/N) sum_i [KL(p_i || m_i) + KL(q_i || m_i)] / 2",
        family="js",
        diagonal=None,
    )
)

_MAPPER_OPTIONS = (
    Arg("sphere", "bool", False, doc="L2-normalise the output"),
    Arg("softmax", "bool", False, doc="softmax the output: cluster assignments"),
)
_register(
    Block(
        "table",
        "mapper",
        (Arg("dim", "int", 2, SIZE, doc="embedding dimension"), *_MAPPER_OPTIONS),
        doc="A free embedding per sample index (non-parametric: t-SNE, SNE).",
        formula="f(x_i) = E[i]",
        family="table",
        diagonal=None,
        parametric=False,
    )
)
_register(
    Block(
        "linear",
        "mapper",
        (Arg("dim", "int", 2, SIZE), *_MAPPER_OPTIONS),
        doc="A linear map of the features.",
        formula="f(x) = W x + b",
        family="linear",
        diagonal=None,
    )
)
_register(
    Block(
        "mlp",
        "mapper",
        (
            Arg("dim", "int", 2, SIZE),
            Arg("hidden", "int", 256, SIZE, doc="hidden width"),
            Arg("depth", "int", 2, DEPTH, doc="number of linear layers"),
            *_MAPPER_OPTIONS,
        ),
        doc="A multilayer perceptron with ReLU activations.",
        formula="f(x) = W_depth relu(... relu(W_1 x))",
        family="mlp",
        diagonal=None,
    )
)

#: The spec's inputs and what kind of value each one is.
INPUTS: dict[str, ArgKind] = {
    "x": "vector",
    "side": "vector",  # side information: X-Sample CL's captions, LGSimCLR's guidance features
    "y": "labels",
    "index": "index",
    "modality": "modality",
}

#: What `f(x)` is: the mapper applied to the features.
MAPPER_OUTPUT = "f"

#: Statements that assign: the name on the left and the role its value must have.
TARGETS: dict[str, Role] = {
    "p": "distribution",
    "q": "distribution",
    "mapper": "mapper",
    "loss": "divergence",
}

#: Bare names that are values of choice and bool arguments.
CONSTANTS = {"true": True, "false": False, **{m: m for m in METRICS}}


def is_kernel(op: str) -> bool:
    """Is an IR op a registry kernel (a block with a log-weight formula)?"""
    block = BLOCKS.get(op)
    return block is not None and block.is_kernel


def blocks(role: Role | None = None) -> list[Block]:
    """Registered blocks in registration order, optionally of one role."""
    return [b for b in BLOCKS.values() if role is None or b.role == role]


def known_names() -> list[str]:
    """Every name a spec may use without defining it (for "did you mean")."""
    return sorted({*BLOCKS, *INPUTS, MAPPER_OUTPUT, *CONSTANTS, *TARGETS})
