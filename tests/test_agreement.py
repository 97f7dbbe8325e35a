"""The interpreter (icon_dsl.interpret, the oracle) agrees with the generated code.

For every spec in specs/, on several seeded float64 batches: dense p and q from the module's
`.distributions`, the forward loss, `.divergence`, the number of dropped rows and the gradient of
the loss w.r.t. z all equal the interpreter's Evaluation (p, q, loss, divergence, valid) to
TOL = 1e-8 (absolute). Both the COMMITTED generated/<stem>.py (loaded by file path) and the code
the current compiler produces (`icon_dsl.compile(path).load()`) are checked.

A few extra inline specs cover blocks the committed specs do not use (debias, mixtures, knn, a
user kernel, js, student_t with a scale): the generated code must agree with the interpreter on
those too.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import pytest
import torch
import whole_table as W
from conftest import ROOT, SPECS
from conftest import load_generated as load_committed

import icon_dsl
from icon_dsl.interpret import interpret

F64 = torch.float64
TOL = 1e-8
SEEDS = [0, 1, 2]
N = 40  # larger than the perplexity (30) of sne / tsne, and even (two views per sample)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hyper_values(ir, seed: int) -> dict[str, float]:
    """The spec's defaults on seed 0; other seeds scale real hyperparameters by 0.75 so that a
    constructor argument that is ignored shows up. Required ones (no default) get 0.7 * 1.25^seed."""
    out = {}
    for name, h in sorted(ir.hypers.items()):
        if h.default is None:
            out[name] = 0.7 * 1.25**seed
        elif h.integer:
            out[name] = int(h.default)
        elif seed == 0:
            out[name] = h.default
        else:
            out[name] = h.default * 0.75
    return out


def batch(
    cls: type[Any], ir, seed: int, n: int = N
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """z and the inputs the module's forward names, seeded. On odd seeds some rows of label /
    augmentation specs are made empty (a class seen once, a sample with a single view)."""
    g = _gen(seed)
    names = [
        p.name
        for p in inspect.signature(cls.forward).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    ops = {ir.op(node) for node in ir.graph.nodes}
    inputs: dict[str, torch.Tensor] = {}
    views = torch.arange(n // 2).repeat(2)
    order = torch.randperm(n, generator=g)
    for name in names:
        if name in ("x", "side"):
            inputs[name] = torch.randn(n, 5 if name == "x" else 4, generator=g, dtype=F64)
        elif name == "y":
            n_cls = 10 if "classes" in ops else 5
            y = torch.randint(0, n_cls, (n,), generator=g)
            if seed % 2 and "classes" not in ops:
                y[0] = n_cls  # a class seen once
            inputs["y"] = y
        elif name == "index" and "graph" in ops:
            inputs["index"] = torch.randperm(GRAPH_SIZE, generator=g)[:n]
        elif name == "index":
            index = views[order].clone()
            if seed % 2 and "cross_modal" not in ops:
                index[0] = n  # one sample with a single view: two empty rows
            inputs["index"] = index
        elif name == "modality":
            inputs["modality"] = (torch.arange(n) >= n // 2).long()[order]
        else:
            raise AssertionError(f"the test does not know how to make input {name!r}")
    z = torch.randn(n, 6, generator=g, dtype=F64)
    if ir.op(ir.roots["q"]) == "gaussian" and _small_sigma(ir):
        z = 0.1 * z  # the interpreter works in probability space: keep exp(-d2/2s^2) > 0
    if "cluster" in ops:
        z = torch.softmax(2 * z, dim=1)
    return z, inputs


GRAPH_SIZE = 60


def _small_sigma(ir) -> bool:
    sigma = ir.args(ir.roots["q"]).get("sigma")
    try:
        return sigma is not None and float(sigma) < 0.2
    except TypeError:  # a hyperparameter
        return False


def constructor_tensors(cls: type[Any], seed: int) -> dict[str, torch.Tensor]:
    """Required tensor arguments of the constructor (a graph's `adjacency`)."""
    out = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.default is inspect.Parameter.empty and p.annotation in ("Tensor", torch.Tensor):
            assert p.name == "adjacency", f"unexpected tensor argument {p.name}"
            g = _gen(seed + 11)
            w = torch.rand(GRAPH_SIZE, GRAPH_SIZE, generator=g, dtype=F64)
            w = (w + w.T) * (torch.rand(GRAPH_SIZE, GRAPH_SIZE, generator=g) < 0.5)
            out[p.name] = (w + w.T) / 2
    return out


def check_agreement(cls: type[Any], ir, seed: int) -> None:
    hypers = hyper_values(ir, seed)
    kwargs = {_kwarg(cls, name): value for name, value in hypers.items()}
    tensors = constructor_tensors(cls, seed)
    module = cls(**kwargs, **tensors).double()
    z, inputs = batch(cls, ir, seed)
    prototypes = None
    if hasattr(module, "prototypes"):
        prototypes = module.prototypes
        z = torch.randn(N, prototypes.shape[1], generator=_gen(seed + 7), dtype=F64)
        if _small_sigma(ir):  # the interpreter works in probability space: see batch()
            z = 0.1 * z
            with torch.no_grad():
                prototypes.mul_(0.1)
    z1 = z.clone().requires_grad_()
    z2 = z.clone().requires_grad_()

    p, q = module.distributions(z, **inputs)
    loss = module(z1, **inputs)
    dropped = module.last_dropped_rows
    div = module.divergence(z, **inputs)
    ev = interpret(ir, z2, {**inputs, **tensors}, hypers, prototypes)

    torch.testing.assert_close(p, ev.p.detach(), atol=TOL, rtol=0, msg="p differs")
    torch.testing.assert_close(q, ev.q.detach(), atol=TOL, rtol=0, msg="q differs")
    assert dropped == int((~ev.valid).sum()), "dropped rows differ"
    assert torch.isfinite(loss) and torch.isfinite(div)
    a, b = float(loss.detach()), float(ev.loss.detach())
    assert abs(a - b) <= TOL, f"loss {a} vs {b}"
    a, b = float(div.detach()), float(ev.divergence.detach())
    assert abs(a - b) <= TOL, f"divergence {a} vs {b}"
    (g1,) = torch.autograd.grad(loss, z1)
    (g2,) = torch.autograd.grad(safe_loss(ir, ev), z2)
    torch.testing.assert_close(g1, g2, atol=TOL, rtol=0, msg="gradient w.r.t. z differs")


def _safe_log(t: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.where(where, t, torch.ones_like(t)))


def safe_loss(ir, ev) -> torch.Tensor:
    """The interpreter's training loss recomputed from its (differentiable) p and q with logs
    guarded on both branches, so that its gradient is not NaN where p or q is 0 (Evaluation.loss
    itself has NaN gradients there: see test_interpreter_loss_gradient_is_finite)."""
    v = ev.valid
    p, q = ev.p[v], ev.q[v]
    op = ir.op(ir.roots["loss"])
    if op == "kl":
        ce = -(p * _safe_log(q, p > 0)).sum(1)
        if ir.dist_type(ir.roots["p"]).learned:
            ce = ce + (p * _safe_log(p, p > 0)).sum(1)
        out = ce
    elif op == "reverse_kl":
        out = (q * (_safe_log(q, q > 0) - _safe_log(p, q > 0))).sum(1)
    else:
        m = (p + q) / 2
        a = (p * (_safe_log(p, p > 0) - _safe_log(m, p > 0))).sum(1)
        b = (q * (_safe_log(q, q > 0) - _safe_log(m, q > 0))).sum(1)
        out = (a + b) / 2
    if ir.dist_type(ir.roots["p"]).normalised == "joint":
        return out.sum()  # joint form: one KL over the whole matrix, not a mean over rows
    return out.mean()


def _kwarg(cls: type[Any], name: str) -> str:
    """The constructor keyword for spec hyperparameter `name` (sanitised if it is a keyword)."""
    params = inspect.signature(cls.__init__).parameters
    if name in params:
        return name
    candidates = [p for p in params if p.rstrip("_") == name.rstrip("_") and p != "self"]
    assert len(candidates) == 1, f"no constructor argument for {name}: {list(params)}"
    return candidates[0]


# ----------------------------------------------------------------------------- specs/


@functools.cache
def compiled(stem: str) -> icon_dsl.api.CompiledModule:
    """The spec compiled by the current compiler (once per test session)."""
    return icon_dsl.compile(ROOT / "specs" / f"{stem}.icon")


def test_specs_are_the_expected_set():
    stems = {p.stem for p in SPECS}
    assert {"simclr", "supcon", "cross_entropy", "sne", "tsne", "kmeans", "card"} <= stems


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("stem", [p.stem for p in SPECS])
def test_committed_module_agrees_with_interpreter(stem, seed):
    check_agreement(load_committed(stem), compiled(stem).ir, seed)


@pytest.mark.parametrize("seed", SEEDS[1:2])
@pytest.mark.parametrize("stem", [p.stem for p in SPECS])
def test_freshly_compiled_module_agrees_with_interpreter(stem, seed):
    module = compiled(stem)
    check_agreement(module.load(), module.ir, seed)


# ----------------------------------------------------------------------------- extra blocks

EXTRA = {
    "debias_label": """
        param alpha = 0.3
        p = debias(label(y), alpha)
        q = gaussian(f(x), temperature=0.2, metric=cosine)
        mapper = mlp(dim=8, hidden=16, depth=2)
    """,
    "mixture_knn": """
        p = 0.25 * knn(x, 5) + 0.75 * gaussian(x, sigma=1.5)
        q = student_t(f(x), dof=3, scale=0.5)
        mapper = table(dim=2)
    """,
    "user_kernel": """
        param gamma = 1.5
        kernel cauchy(d2, g) = 1 / (1 + d2 / g^2)
        p = gaussian(x, sigma=2)
        q = normalize(cauchy(f(x), gamma))
        mapper = table(dim=2)
    """,
    "user_kernel_expression_argument": """
        param gamma = 1.5
        kernel cauchy(d2, g) = 1 / (1 + d2 / g^2)
        p = gaussian(x, sigma=2)
        q = normalize(cauchy(f(x), 2 * gamma))
        mapper = table(dim=2)
    """,
    "js_dot": """
        p = augmentation(index)
        q = gaussian(f(x), metric=dot, temperature=2)
        loss = js(p, q)
        mapper = linear(dim=4)
    """,
    # a narrow q whose smallest probabilities underflow: log m must not become -inf
    "js_narrow_cosine": """
        p = knn(x, 3)
        q = gaussian(f(x), temperature=0.00922, metric=cosine)
        loss = js(p, q)
        mapper = table(dim=3)
    """,
    # debias of a narrow kernel q, in logs: its underflowing probabilities keep a finite log
    "debias_narrow_q": """
        param alpha = 0.25
        kernel k(d2, a) = exp(-d2 / a)
        p = union(gaussian(x, sigma=2), knn(x, 3))
        q = debias(normalize(k(f(x), a=0.05)), alpha)
        mapper = mlp(dim=3, hidden=4, depth=2, sphere=true)
    """,
    # the graph's kept-row test joins the others with `&` (a bare `> 0` did not parse as meant)
    "union_label_graph": """
        p = union(debias(label(y), 0.5), graph(index))
        q = gaussian(f(x), temperature=0.5, metric=cosine)
        mapper = table(dim=3)
    """,
    # a fixed-width joint p inside a union (its log form turned into probabilities)
    "union_of_joint": """
        p = union(joint(gaussian(x, sigma=2)), knn(x, 3))
        q = student_t(f(x))
        mapper = table(dim=2)
    """,
    # both sides joint with a fixed width: the neighbour path takes p in log form
    "joint_fixed_width": """
        p = joint(gaussian(x, sigma=2))
        q = joint(student_t(f(x)))
        mapper = table(dim=2)
    """,
}


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize("name", list(EXTRA))
def test_extra_spec_agrees_with_interpreter(name, seed):
    module = icon_dsl.compile(_dedent(EXTRA[name]))
    check_agreement(module.load(), module.ir, seed)


def _dedent(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines()) + "\n"


# ----------------------------------------------------------------------------- interpreter bugs


def test_interpreter_small_sigma_does_not_underflow():
    """A narrow kernel (triplet, sigma = 0.05): exact log q where q underflows to 0."""
    module = icon_dsl.compile(ROOT / "specs" / "triplet.icon")
    cls = load_committed("triplet")
    g = _gen(0)
    z = torch.randn(N, 6, generator=g, dtype=F64)
    index = torch.arange(N // 2).repeat(2)
    ev = interpret(module.ir, z, {"index": index}, {}, None)
    assert torch.isfinite(ev.loss)
    assert abs(float(ev.loss) - float(cls()(z, index=index))) <= 1e-6 * float(ev.loss)


def test_interpreter_loss_gradient_is_finite():
    """Evaluation.loss must be differentiable where q = 0 = p (the excluded diagonal)."""
    module = icon_dsl.compile(ROOT / "specs" / "card.icon")
    g = _gen(0)
    z = torch.randn(10, 2, generator=g, dtype=F64, requires_grad=True)
    x = torch.randn(10, 3, generator=g, dtype=F64)
    ev = interpret(module.ir, z, {"x": x}, {"sigma": 1.0}, None)
    (grad,) = torch.autograd.grad(ev.loss, z)
    assert torch.isfinite(grad).all()


# ----------------------------------------------------------------------------- the whole table


_ENUMERATED = W.specs()


@pytest.mark.parametrize("seed", SEEDS[1:3])
@pytest.mark.parametrize(("name", "spec"), _ENUMERATED, ids=W.ids(_ENUMERATED))
def test_every_enumerated_module_agrees_with_interpreter(name, spec, seed):
    """The oracle over the whole table: p, q, dropped rows, loss, divergence and gradient of
    every generated module (contrastive, neighbour and dense forwards) equal the interpreter's."""
    module = icon_dsl.compile(spec)
    check_agreement(module.load(), module.ir, seed)
