"""The vocabulary of the space: spec fragments and one example instance per registry family.

Takes: the registry. Guarantees: `P_EXAMPLES`, `Q_EXAMPLES`, `MAPPER_EXAMPLES` and
`MODIFIER_EXAMPLES` hold the example instance of each family the table knows; a family missing
from them gets a generic instance built from its block's required arguments (`_generic_call`);
`p_families`, `q_families`, `mapper_families`, `modifier_names` and `divergence_names` list the
axes in registry order. `space` crosses them into spec text.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import registry as reg

# -- spec fragments ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One block call of the spec language, as data: `name(arg, ..., key=value, ...)`."""

    name: str
    args: tuple[str, ...] = ()
    kwargs: tuple[tuple[str, str], ...] = ()

    def with_kw(self, key: str, value: str) -> Call:
        """The same call with `key=value` set (replacing an existing value in place)."""
        if any(k == key for k, _ in self.kwargs):
            kwargs = tuple((k, value if k == key else v) for k, v in self.kwargs)
        else:
            kwargs = (*self.kwargs, (key, value))
        return replace(self, kwargs=kwargs)

    def kw(self, key: str) -> str | None:
        return next((v for k, v in self.kwargs if k == key), None)

    def render(self, **holes: str) -> str:
        parts = [a.format(**holes) for a in self.args]
        parts += [f"{k}={v.format(**holes)}" for k, v in self.kwargs]
        return f"{self.name}(" + ", ".join(parts) + ")"


def _c(name: str, *args: str, **kwargs: str) -> Call:
    return Call(name, args, tuple(kwargs.items()))


@dataclass(frozen=True)
class QForm:
    """A q family's example instances: over items with a network or a table mapper, over columns."""

    network: Call | None
    table: Call | None = None  # None: the network form
    columns: Call | None = None  # over prototype columns; `{n}` is the number of columns
    assignments: bool = False  # f(x) must be soft cluster assignments (a softmax mapper)
    # the paper's limit rows: (regime, the width that stands for it), e.g. ("sigma->0", "0.05")
    limits: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Modifier:
    """How a modifier block wraps a family instance: `{d}` is the wrapped instance."""

    call: Call
    sides: tuple[str, ...] = ("p",)  # which of p, q it wraps
    partner: Call | None = None  # union: the second distribution (skipped when equal to p)
    alternate: Call | None = None  # union: the partner used when p is the partner's family
    # union: extra members by p family (the paper's union of views, kNN and a walk over kNN)
    extra: tuple[tuple[str, tuple[Call, ...]], ...] = ()
    # q families this modifier also wraps, as a second variant (debias both sides of a cluster q)
    also_q: tuple[str, ...] = ()


#: The metric of the sigma-limit rows: bounded, so the width is not a free scale of f(x).
LIMIT_METRIC = "cosine"

#: p column -> its canonical instance. None: the family is not a p (cluster needs assignments).
P_EXAMPLES: dict[str, Call | None] = {
    "gaussian": _c("gaussian", "x", perplexity="30"),
    "student_t": _c("student_t", "x"),
    "knn": _c("knn", "x", "10"),
    "label": _c("label", "y"),
    "augmentation": _c("augmentation", "index"),
    "classes": _c("classes", "y", "10"),
    "identity": _c("identity"),
    "uniform": _c("uniform"),
    "cluster": None,
}

#: p column -> its instance on the side input (X-Sample CL, LGSimCLR compare side features by
#: cosine). A family missing here gets its x instance with `x` replaced by the input's name.
SIDE_EXAMPLES: dict[str, Call] = {
    "gaussian": _c("gaussian", "side", temperature="0.1", metric="cosine"),
    "knn": _c("knn", "side", "10", metric="cosine"),
}

#: q row -> its canonical instances.
Q_EXAMPLES: dict[str, QForm] = {
    "gaussian": QForm(
        network=_c("gaussian", "f(x)", temperature="0.5", metric="cosine"),
        table=_c("gaussian", "f(x)"),
        columns=_c("gaussian", "f(x)", "prototypes({n})", metric="dot"),
        # the limit rows are on the unit sphere, where the width cannot be absorbed by a rescaling
        # of f(x) (icon_dsl.enumeration.limits); on a euclidean kernel they would be the plain row
        limits=(("sigma->inf", "100"), ("sigma->0", "0.1")),
    ),
    "student_t": QForm(
        network=_c("student_t", "f(x)"),
        columns=_c("student_t", "f(x)", "prototypes({n})"),
    ),
    "cluster": QForm(network=_c("cluster", "f(x)"), assignments=True),
}

#: mapper -> (instance for embeddings, instance for cluster assignments).
MAPPER_EXAMPLES: dict[str, tuple[Call, Call]] = {
    "table": (_c("table", dim="2"), _c("table", dim="10", softmax="true")),
    "linear": (_c("linear", dim="16"), _c("linear", dim="10", softmax="true")),
    "mlp": (_c("mlp", dim="64"), _c("mlp", dim="10", softmax="true")),
}

#: modifier -> how it wraps p (and q).
MODIFIER_EXAMPLES: dict[str, Modifier] = {
    "debias": Modifier(_c("debias", "{d}", "0.5"), also_q=("cluster",)),
    "walk": Modifier(_c("walk", "{d}", steps="1")),
    "union": Modifier(
        _c("union", "{d}", "{partner}"),
        partner=_c("knn", "x", "10"),
        alternate=_c("augmentation", "index"),
        extra=(("augmentation", (_c("walk", "knn(x, 10)", steps="1"),)),),
    ),
    "joint": Modifier(_c("joint", "{d}"), sides=("p", "q")),
}

#: Example values for required arguments of blocks missing from the tables, by argument kind.
_GENERIC_P_ARG = {"vector": "x", "labels": "y", "index": "index", "modality": "modality"}
_DEFAULT_DIVERGENCES = ("kl", "reverse_kl")


def _example_number(arg: reg.Arg) -> str:
    dom = arg.domain
    if arg.kind == "int":
        return "10"
    if dom is not None and dom.hi <= 1:
        return "0.5"
    return "1"


def _generic_call(block: reg.Block, vector: str) -> Call | None:
    """An instance of `block` from its required arguments; None where one cannot be made."""
    args: list[str] = []
    for arg in block.args:
        if not arg.required:
            continue
        if arg.kind == "vector":
            args.append(vector)
        elif arg.kind in _GENERIC_P_ARG:
            args.append(_GENERIC_P_ARG[arg.kind])
        elif arg.kind in ("int", "real"):
            args.append(_example_number(arg))
        elif arg.kind == "choice" and arg.choices:
            args.append(arg.choices[0])
        elif arg.kind == "dist":
            args.append("{d}")
        else:
            return None
    return Call(block.name, tuple(args))


# -- the axes, read from the registry ------------------------------------------------------------


def _is_modifier(block: reg.Block) -> bool:
    return any(a.kind in ("dist", "weights") for a in block.args)


def _has_vector(block: reg.Block) -> bool:
    return any(a.kind == "vector" for a in block.args)


def _families(role: reg.Role) -> dict[str, reg.Block]:
    """family -> first block of that family with this role, in registry order."""
    out: dict[str, reg.Block] = {}
    for block in reg.blocks(role):
        out.setdefault(block.family, block)
    return out


def p_families() -> list[str]:
    """Every family that can be a p: plain distribution blocks with an example instance."""
    out = []
    for family, block in _families("distribution").items():
        if _is_modifier(block) or P_EXAMPLES.get(family, False) is None:
            continue
        if _p_call(family) is not None:
            out.append(family)
    return out


def q_families() -> list[str]:
    """Every family that can be a learned q: differentiable blocks that take a vector f(x)."""
    out = []
    for family, block in _families("distribution").items():
        if _is_modifier(block) or not block.differentiable or not _has_vector(block):
            continue
        out.append(family)
    return out


def mapper_families() -> list[str]:
    return list(_families("mapper"))


def modifier_names() -> list[str]:
    """Every distribution block that wraps another distribution (debias, walk, union, joint...)."""
    return [b.name for b in reg.blocks("distribution") if any(a.kind == "dist" for a in b.args)]


def divergence_names() -> list[str]:
    return [b.name for b in reg.blocks("divergence")]


def _p_call(family: str) -> Call | None:
    if family in P_EXAMPLES:
        return P_EXAMPLES[family]
    block = _families("distribution").get(family)
    if block is None:
        return None
    call = _generic_call(block, "x")
    return None if call is None or "{d}" in call.args else call


def _q_form(family: str) -> QForm | None:
    if family in Q_EXAMPLES:
        return Q_EXAMPLES[family]
    block = _families("distribution")[family]
    call = _generic_call(block, "f(x)")
    if call is None:
        return None
    columns_block = next(iter(_families("columns").values()), None)
    columns = None
    if block.accepts_columns and columns_block is not None:
        columns = Call(call.name, (call.args[0], f"{columns_block.name}({{n}})", *call.args[1:]))
    return QForm(network=call, columns=columns)


def _mapper_call(family: str, assignments: bool) -> Call | None:
    if family in MAPPER_EXAMPLES:
        return MAPPER_EXAMPLES[family][1 if assignments else 0]
    block = _families("mapper")[family]
    call = _generic_call(block, "x")
    if call is None:
        return None
    if assignments:
        return call.with_kw("softmax", "true") if block.arg("softmax") else None
    return call


def _modifier(name: str) -> Modifier:
    if name in MODIFIER_EXAMPLES:
        return MODIFIER_EXAMPLES[name]
    call = _generic_call(reg.BLOCKS[name], "x")
    if call is None:
        raise ValueError(f"no example instance for modifier {name}: add it to MODIFIER_EXAMPLES")
    return Modifier(call)
