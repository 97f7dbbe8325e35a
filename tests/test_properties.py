"""Property tests (hypothesis) for the parser, the printer, the checks and the generated code.

A strategy writes random WELL-TYPED specs: a mapper with options; p built from the registry's
kernels, indicators, `debias` and mixtures with literal weights; q a smooth kernel of f(x) or a
normalised user kernel; plus the cluster (k-means) and class-prototype shapes. Properties:

- parse -> print_spec -> parse is the identity (syntax equality ignores spans);
- whenever `icon_dsl.check` accepts a spec, the generated module's p and q rows sum to 1 on every
  kept row, and the interpreter gives the same p and q to 1e-8, on random float64 inputs;
- arbitrary expression trees print to text that parses back to the same tree;
- any text at all gives a spec or a SpecError from `check`, never another exception.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import torch
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

import icon_dsl
from icon_dsl import syntax as s
from icon_dsl.diagnostics import SpecError
from icon_dsl.interpret import interpret

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Mixtures weighted by a hyperparameter, `a * d1 + (1 - a) * d2` (codegen once printed the
#: weight `1 - a` without brackets: test_hyperparameter_mixture_weights_are_bracketed).
HYPER_WEIGHTS = True

N = 8  # batch size of the numeric checks
FEATURES = 3  # columns of x

# -- the spec strategy ----------------------------------------------------------------------


@dataclass
class Generated:
    """A generated spec and what running it needs."""

    text: str
    hypers: dict[str, float]  # constructor arguments of the hyperparameters without default
    dim: int  # the mapper's output dimension: columns of z
    shape: str  # "pairs", "cluster" or "classes"
    classes: int = 3  # labels are drawn below this


@dataclass
class _Builder:
    """Statements and hyperparameters collected while one spec is drawn."""

    draw: st.DrawFn
    params: list[str] = field(default_factory=list)
    kernels: dict[str, str] = field(default_factory=dict)
    hypers: dict[str, float] = field(default_factory=dict)

    def fresh(self) -> str:
        return f"h{len(self.params) + len(self.hypers)}"

    def number(self, literals: list[str], value: float, interval: str | None = None) -> str:
        """A numeric argument: a literal, a required hyperparameter, or a declared `param`."""
        how = self.draw(st.sampled_from(["literal", "literal", "required", "param"]))
        if how == "literal":
            return self.draw(st.sampled_from(literals))
        name = self.fresh()
        if how == "required":
            self.hypers[name] = value
        else:
            domain = f" in {interval}" if interval and self.draw(st.booleans()) else ""
            self.params.append(f"param {name}{domain} = {value!r}")
        return name

    def positive(self) -> str:
        return self.number(["0.5", "1", "2", "1.5", "3e-1", ".75"], 0.8, "[0.5, 2]")

    def unit(self) -> str:
        return self.number(["0", "0.1", "0.5", "1", "2/5"], 0.3, "[0, 1]")

    def positive_unit(self) -> str:
        """A weight the checker can prove > 0: a literal, or a param declared in [0.1, 1] (a bare
        hyperparameter only gets debias' [0, 1], and alpha = 0 keeps p's zeros)."""
        if self.draw(st.booleans()):
            return self.draw(st.sampled_from(["0.1", "0.5", "1", "2/5"]))
        name = self.fresh()
        self.params.append(f"param {name} in [0.1, 1] = 0.3")
        return name

    def count(self) -> str:
        return self.number(["1", "2", "3"], 2, "[1, 3]")

    def options(self, *pairs: tuple[str, str | Callable[[], str]]) -> str:
        """`, name=value` for a random subset of the options, in a random order; a callable value
        is drawn only when its option is chosen."""
        chosen = self.draw(st.lists(st.sampled_from(pairs), unique_by=lambda p: p[0]))
        return "".join(
            f", {name}={value if isinstance(value, str) else value()}" for name, value in chosen
        )


_KERNELS = {
    "cauchy": ("cauchy(d2, g) = 1 / (1 + d2 / g^2)", 1),
    "heat": ("heat(d2, t) = exp(-d2 / t)", 1),
    "power": ("power(d2, a) = (1 + d2) ** (-a)", 1),
    "inverse": ("inverse(d2) = 1 / (1 + d2)", 0),
    "blend": ("blend(d2, a, b) = a * exp(-d2) + b / (1 + sqrt(d2))", 2),
}


def _width(b: _Builder) -> str:
    """gaussian's width: sigma, temperature, or neither."""
    which = b.draw(st.sampled_from(["sigma", "temperature", "none"]))
    return "" if which == "none" else f", {which}={b.positive()}"


def _p_leaf(b: _Builder, diagonal: bool, dense: bool = False) -> str:
    """A primitive p; `dense`: only those nonzero over the whole support (kernels, uniform)."""
    diag = ", diagonal=true" if diagonal else ""
    metric2 = ("metric", b.draw(st.sampled_from(["euclidean", "cosine"])))
    metric3 = ("metric", b.draw(st.sampled_from(["euclidean", "cosine", "dot"])))
    kinds = ["gaussian", "perplexity", "student_t", "uniform"]
    if not diagonal and not dense:
        kinds += ["knn", "label", "augmentation"]
    kind = b.draw(st.sampled_from(kinds))
    if kind == "gaussian":
        return f"gaussian(x{_width(b)}{b.options(metric3)}{diag})"
    if kind == "perplexity":
        perplexity = b.draw(st.sampled_from(["2", "3", "4.5"]))
        return f"gaussian(x, perplexity={perplexity}{b.options(metric2)}{diag})"
    if kind == "student_t":
        return f"student_t(x{b.options(('dof', b.positive), ('scale', b.positive), metric2)}{diag})"
    if kind == "uniform":
        return f"uniform({'diagonal=true' if diagonal else ''})"
    if kind == "knn":
        return f"knn(x, {b.count()}{b.options(metric2)})"
    return "label(y)" if kind == "label" else "augmentation(index)"


#: Literal mixture weights, decimals that are not binary fractions among them.
_WEIGHTS = [
    ("0.3", "0.7"),
    ("0.5", "0.5"),
    ("0.25", "0.75"),
    ("1/3", "2/3"),
    ("1/5", "(1 - 1/5)"),
    ("0.125", "(1 - 0.125)"),
]


def _p(b: _Builder, diagonal: bool, depth: int = 2) -> str:
    form = b.draw(st.sampled_from(["leaf", "leaf", "debias", "mixture"] if depth else ["leaf"]))
    if form == "leaf":
        return _p_leaf(b, diagonal)
    if form == "debias":
        return f"debias({_p(b, diagonal, depth - 1)}, {b.unit()})"
    return _mixture(b, diagonal, depth)


def _term(b: _Builder, diagonal: bool, depth: int) -> str:
    """A mixture component: a nested mixture goes in parentheses."""
    text = _p(b, diagonal, depth)
    return f"({text})" if " + " in text and not text.startswith("debias(") else text


def _mixture(b: _Builder, diagonal: bool, depth: int) -> str:
    if b.draw(st.booleans()):
        w1, w2 = b.draw(st.sampled_from(_WEIGHTS))
        return f"{w1} * {_term(b, diagonal, depth - 1)} + {w2} * {_term(b, diagonal, depth - 1)}"
    if b.draw(st.booleans()):
        parts = [_term(b, diagonal, depth - 1) for _ in range(3)]
        return f"0.25 * {parts[0]} + 0.25 * {parts[1]} + 0.5 * {parts[2]}"
    if not HYPER_WEIGHTS:
        return (
            f"(1 - 2/5) * {_term(b, diagonal, depth - 1)} + 2/5 * {_term(b, diagonal, depth - 1)}"
        )
    name = b.fresh()
    b.params.append(f"param {name} in [0, 1] = 0.4")
    first, second = _term(b, diagonal, depth - 1), _term(b, diagonal, depth - 1)
    return f"{name} * {first} + (1 - {name}) * {second}"


def _q(b: _Builder) -> str:
    metric2 = ("metric", b.draw(st.sampled_from(["euclidean", "cosine"])))
    metric3 = ("metric", b.draw(st.sampled_from(["euclidean", "cosine", "dot"])))
    kind = b.draw(st.sampled_from(["gaussian", "student_t", "kernel"]))
    if kind == "gaussian":
        return f"gaussian(f(x){_width(b)}{b.options(metric3)})"
    if kind == "student_t":
        return f"student_t(f(x){b.options(('dof', b.positive), ('scale', b.positive), metric2)})"
    name = b.draw(st.sampled_from(sorted(_KERNELS)))
    definition, arity = _KERNELS[name]
    b.kernels[name] = definition
    args = "".join(f", {b.positive()}" for _ in range(arity))
    return f"normalize({name}(f(x){args}{b.options(metric2)}))"


def _prototype_q(b: _Builder, n: int) -> str:
    if b.draw(st.booleans()):
        metric = ("metric", b.draw(st.sampled_from(["euclidean", "cosine", "dot"])))
        return f"gaussian(f(x), prototypes({n}){_width(b)}{b.options(metric)})"
    metric = ("metric", b.draw(st.sampled_from(["euclidean", "cosine"])))
    opts = b.options(("dof", b.positive), ("scale", b.positive), metric)
    return f"student_t(f(x), prototypes({n}){opts})"


def _mapper(b: _Builder, dim: int, softmax: bool) -> str:
    kind = b.draw(st.sampled_from(["table", "linear", "mlp"]))
    options = [("dim", str(dim))]
    if kind == "mlp":
        options += [("hidden", b.draw(st.sampled_from(["4", "16"]))), ("depth", "2")]
    if softmax:
        options.append(("softmax", "true"))
    elif b.draw(st.booleans()):
        options.append(("sphere", b.draw(st.sampled_from(["true", "false"]))))
    chosen = b.draw(st.permutations(options))
    if kind == "table" and dim == 2 and not softmax and not chosen[1:] and b.draw(st.booleans()):
        return "table"  # the bare mapper name, as in the one-line spec
    return f"{kind}({', '.join(f'{k}={v}' for k, v in chosen)})"


@st.composite
def specs(
    draw: st.DrawFn, shapes: tuple[str, ...] = ("pairs", "pairs", "cluster", "classes")
) -> Generated:
    """A well-typed spec of one of `shapes`: "pairs" (N x N), "cluster" or "classes"."""
    b = _Builder(draw)
    shape = draw(st.sampled_from(shapes))
    dim = draw(st.integers(2, 4))
    classes = 3
    loss = None
    if shape == "pairs":
        loss = draw(st.sampled_from([None, "kl", "js", "reverse_kl"]))
        if loss != "reverse_kl":
            p = _p(b, diagonal=False)
        elif draw(st.booleans()):  # KL(q || p) is finite only where p has full support
            p = _p_leaf(b, diagonal=False, dense=True)
        else:
            p = f"debias({_p(b, diagonal=False, depth=1)}, {b.positive_unit()})"
        q = _q(b)
    elif shape == "cluster":
        p, q, loss = _p(b, diagonal=True), "cluster(f(x))", "reverse_kl"
    else:
        classes = draw(st.integers(2, 4))
        p, q = f"classes(y, {classes})", _prototype_q(b, classes)
        loss = draw(st.sampled_from([None, "kl", "js"]))
    lines = [f"mapper = {_mapper(b, dim, softmax=shape == 'cluster')}", f"p = {p}", f"q = {q}"]
    if loss is not None:
        lines.append(f"loss = {loss}(p, q)")
    lines += b.params
    lines += [f"kernel {k}" for k in b.kernels.values()]
    lines = draw(st.permutations(lines))
    if draw(st.booleans()):
        lines.insert(0, 'method generated "a generated spec"')
    text = ""
    for line in lines:
        comment = draw(st.sampled_from(["", "", "  # a comment"]))
        sep = "\n" if comment else draw(st.sampled_from(["\n", "\n", " ; ", "\n\n"]))
        text += line + comment + sep
    return Generated(text, b.hypers, dim, shape, classes)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """8 x 8 batches: torch's thread pool only adds overhead (and contention on shared CPUs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- parse / print round trip ---------------------------------------------------------------


@SETTINGS
@given(specs())
def test_print_then_parse_is_the_identity(gen: Generated) -> None:
    note(gen.text)
    spec = icon_dsl.parse(gen.text)
    printed = s.print_spec(spec)
    note(printed)
    assert icon_dsl.parse(printed) == spec
    assert s.print_spec(icon_dsl.parse(printed)) == printed


_names = st.sampled_from(["a", "x", "sigma", "f", "gaussian", "d2", "true", "_b1"]).map(s.Name)
_numbers = st.one_of(
    st.integers(0, 10**6).map(lambda v: s.Number(float(v))),
    # 0 or at least 1e-300: the front end refuses smaller numbers (number-size)
    st.floats(0, 1e6, allow_nan=False, allow_infinity=False)
    .filter(lambda v: v == 0 or v >= 1e-300)
    .map(s.Number),
    st.sampled_from(["0.5", "1e-3", ".25", "2.", "1E+2"]).map(lambda t: s.Number(float(t), t)),
)
_strings = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8).map(
    s.String
)


def _extend(children: st.SearchStrategy[s.Expr]) -> st.SearchStrategy[s.Expr]:
    keyword = st.builds(s.Keyword, _names, children)
    return st.one_of(
        st.builds(s.BinOp, st.sampled_from(["+", "-", "*", "/", "^"]), children, children),
        st.builds(s.Neg, children),
        st.builds(
            s.Call,
            _names,
            st.lists(children, max_size=3).map(tuple),
            st.lists(keyword, max_size=2).map(tuple),
        ),
    )


expressions = st.recursive(st.one_of(_names, _numbers, _strings), _extend, max_leaves=12)


@SETTINGS
@given(expressions)
def test_any_expression_prints_and_parses_back(expr: s.Expr) -> None:
    text = f"p = {s.print_expr(expr)}"
    note(text)
    (stmt,) = icon_dsl.parse(text).statements
    assert stmt == s.Assign(s.Name("p"), expr)


# -- the generated module agrees with the interpreter -------------------------------------


def _inputs(gen: Generated, names: list[str], gen_seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(gen_seed)
    values = {
        "x": torch.randn(N, FEATURES, generator=g, dtype=torch.float64),
        "y": torch.randint(0, gen.classes, (N,), generator=g),
        # a few samples seen once: their rows of an augmentation p are empty
        "index": torch.tensor([0, 0, 1, 1, 1, 2, 3, 4]),
        "modality": torch.tensor([0, 1] * (N // 2)),
    }
    return {name: values[name] for name in names}


def _embeddings(gen: Generated, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    z = torch.randn(N, gen.dim, generator=g, dtype=torch.float64)
    return torch.softmax(z, dim=1) if gen.shape == "cluster" else z


@pytest.mark.parametrize("shape", ["pairs", "cluster", "classes"])
@settings(SETTINGS, max_examples=20)
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_generated_module_is_row_stochastic_and_matches_the_interpreter(
    shape: str, data: st.DataObject, seed: int
) -> None:
    gen = data.draw(specs((shape,)), label="spec")
    note(gen.text)
    try:
        module = icon_dsl.compile(gen.text)
    except SpecError as err:  # the property is about the specs `check` accepts
        note(f"rejected:\n{err}")
        event("rejected by check")
        return
    event(f"checked numerically: {gen.shape}")
    cls = module.load()
    loss = cls(**gen.hypers).double()
    wanted = [
        name
        for name, param in inspect.signature(loss.distributions).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    inputs = _inputs(gen, wanted, seed)
    z = _embeddings(gen, seed)
    with torch.no_grad():
        p, q = loss.distributions(z, **inputs)
    kept = p.sum(1) > 0
    ones = torch.ones(int(kept.sum()), dtype=torch.float64)
    torch.testing.assert_close(p[kept].sum(1), ones, atol=1e-6, rtol=0)
    torch.testing.assert_close(q[kept].sum(1), ones, atol=1e-6, rtol=0)
    assert (p >= 0).all() and (q >= 0).all()
    if gen.shape != "pairs" or "augmentation" not in gen.text and "label" not in gen.text:
        assert kept.all(), "only label and augmentation rows may be empty"

    hypers = {
        h.name: gen.hypers[h.name] if h.default is None else h.default
        for h in module.ir.hypers.values()
    }
    prototypes = getattr(loss, "prototypes", None)
    with torch.no_grad():
        oracle = interpret(
            module.ir, z, inputs, hypers, None if prototypes is None else prototypes.detach()
        )
    torch.testing.assert_close(p, oracle.p, atol=1e-8, rtol=0)
    torch.testing.assert_close(q, oracle.q, atol=1e-8, rtol=0)


def test_hyperparameter_mixture_weights_are_bracketed() -> None:
    # a regression test: codegen emitted `self.a * p1 + 1 - self.a * p2` for `(1 - a)`
    text = (
        "param a in [0, 1] = 0.4\n"
        "p = a * gaussian(x) + (1 - a) * knn(x, 3)\n"
        "q = gaussian(f(x))\n"
        "mapper = table\n"
    )
    loss = icon_dsl.compile(text).load()().double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, FEATURES, generator=g, dtype=torch.float64)
    z = torch.randn(N, 2, generator=g, dtype=torch.float64)
    p, _ = loss.distributions(z, x=x)
    torch.testing.assert_close(p.sum(1), torch.ones(N, dtype=torch.float64))


def test_decimal_mixture_weights_sum_to_one() -> None:
    """Literals are exact rationals in the proof: 0.6 + 0.3 + 0.1 is 1, not 0.9999999999999999."""
    icon_dsl.check(
        "p = 0.6 * gaussian(x) + 0.3 * knn(x, 2) + 0.1 * uniform()\n"
        "q = gaussian(f(x))\n"
        "mapper = table\n"
    )


@SETTINGS
@given(specs())
def test_well_typed_specs_are_accepted(gen: Generated) -> None:
    note(gen.text)
    icon_dsl.check(gen.text)


# -- robustness -------------------------------------------------------------------------------

_TOKENS = [
    *"p q mapper loss x y f index modality sigma a d2".split(),
    *"gaussian student_t knn label augmentation uniform debias normalize classes".split(),
    *"prototypes cluster table mlp kl reverse_kl metric cosine dot true diagonal".split(),
    *"method param kernel in".split(),
    *"0 1 2 0.5 -1 1e9 1e999".split(),
    *"( ) [ ] , = + - * / ^ ** ; \n # @".split(" "),
    '"t"',
    '"\\q"',
    " ",
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=30).map(" ".join))
def test_any_text_is_a_spec_or_a_spec_error(text: str) -> None:
    note(repr(text))
    try:
        icon_dsl.check(text)
    except SpecError as err:
        assert err.codes
        str(err)


@settings(max_examples=60, deadline=None)
@given(specs(), st.data())
def test_mutated_specs_are_specs_or_spec_errors(gen: Generated, data: st.DataObject) -> None:
    text = gen.text
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 6)))
    insert = data.draw(st.sampled_from(["", "(", ")", ",", "-", "x", "0", "f(x)", "\n", "="]))
    mutated = text[:start] + insert + text[end:]
    note(mutated)
    try:
        icon_dsl.check(mutated)
    except SpecError as err:
        assert err.codes
        str(err)
