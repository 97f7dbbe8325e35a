"""The registry: every kernel, modifier, mapper and divergence of the language, as data.

Takes: nothing. Guarantees: one `Block` per name, holding its arguments (kinds, defaults, domains),
what it yields (a row-stochastic distribution, raw weights, a mapper, ...), its shape and diagonal
rule, its sympy weight formula where it is a kernel, and the torch expression codegen emits for it.
The parser's "did you mean", the checks, the interpreter, codegen, the enumerator and
docs/language.md all read this table: adding a kernel is one entry here plus tests. What an entry
is (Block, Arg, Domain) is defined in registry_types.py and importable from here.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

from .registry_types import METRICS, REQUIRED, Arg, ArgKind, Block, Domain, Role
from .registry_types import short_number as short_number

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


# The functions a user kernel's formula may call (`kernel k(d2) = exp(-sqrt(d2))`), by the name
# the spec uses. Code generation prints them (codegen/printing.py), the interpreter evaluates
# them (sympy_torch.py), the docs list them.
KERNEL_FUNCTIONS: dict[str, Callable[[sp.Expr], sp.Expr]] = {
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "abs": sp.Abs,
}

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
        symbol="KL(p||q)",
        mass_from="p",
        trains_on_cross_entropy=True,
        rows_code=(
            "# KL(p || q) = sum_j p (log p - log q)",
            "rows = torch.where(p > 0, p * (log_p - log_q), 0.0).sum(1)",
        ),
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
        symbol="KL(q||p)",
        mass_from="q",
        rows_code=(
            "# KL(q || p) = sum_j q (log q - log p); infinite where q > 0 = p",
            "q = log_q.exp()",
            "# no 0 * inf in the gradient outside q's support (log p is -inf there too when p and",
            "# q both leave j = i out)",
            "log_q = torch.where(q > 0, log_q, 0.0)",
            "log_p = torch.where(q > 0, log_p, 0.0)",
            "rows = torch.where(q > 0, q * (log_q - log_p), 0.0).sum(1)",
        ),
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
        symbol="JS(p, q)",
        rows_code=(
            "# JS = (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2, with log m taken from the",
            "# logs: (p + q) / 2 itself can underflow to 0 where q is tiny but not 0",
            "q = log_q.exp()",
            "# a finite stand-in for log 0 keeps 0 * inf out of the values and the gradient",
            "log_0 = torch.finfo(log_q.dtype).min",
            "log_p = torch.where(log_p > -math.inf, log_p, log_0)",
            "log_q = torch.where(log_q > -math.inf, log_q, log_0)",
            "log_m = torch.logaddexp(log_p, log_q) - math.log(2)",
            "kl_pm = torch.where(p > 0, p * (log_p - log_m), 0.0).sum(1)",
            "kl_qm = torch.where(q > 0, q * (log_q - log_m), 0.0).sum(1)",
            "rows = (kl_pm + kl_qm) / 2",
        ),
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
        summary="a free embedding per sample index",
        init_code=(
            "if num_samples is None:",
            '    raise ValueError("a table mapper needs num_samples (one row per sample)")',
            "self.net = nn.Embedding(num_samples, {dim})",
            "nn.init.normal_(self.net.weight, std=1e-2)",
        ),
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
        summary="a linear map of the features",
        init_code=("self.net = nn.Linear(in_features, {dim})",),
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
        summary="a ReLU multilayer perceptron",
        init_code=(
            "hidden, depth, dim = {hidden}, {depth}, {dim}",
            "widths = [in_features] + [hidden] * (depth - 1)",
            "layers: list[nn.Module] = []",
            "for i in range(depth - 1):",
            "    layers += [nn.Linear(widths[i], hidden), nn.ReLU()]",
            "self.net = nn.Sequential(*layers, nn.Linear(widths[-1], dim))",
        ),
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
