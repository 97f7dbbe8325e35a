"""The fast lowering, row blocks and torch.compile give the dense form's numbers (float64)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import whole_table as W
from conftest import ROOT
from conftest import load_generated as load

import icon_dsl

TOL = 1e-10


def _value_and_grad(fn, z):  # type: ignore[no-untyped-def]
    z = z.detach().clone().requires_grad_(True)
    loss = fn(z)
    (grad,) = torch.autograd.grad(loss, z)
    return loss.detach(), grad


def _batch(stem: str, n: int = 24) -> tuple[torch.Tensor, dict]:
    g = torch.Generator().manual_seed(7)
    z = torch.randn(n, 5, dtype=torch.float64, generator=g)
    if stem in ("supcon",):
        # a singleton class: its row is dropped by both forms
        y = torch.tensor([0] * 7 + [1] * 8 + [2] * 8 + [3])
        return z, {"y": y}
    return z, {"index": torch.randperm(n, generator=g) % (n // 2)}


@pytest.mark.parametrize("stem", ["simclr", "supcon", "triplet", "vicreg"])
@pytest.mark.parametrize("block_size", [None, 5, 24])
def test_fast_forward_equals_dense_terms(stem: str, block_size: int | None) -> None:
    """forward's group-sum lowering (dense or in row blocks) equals the dense p * log q form."""
    module = load(stem)(block_size=block_size)
    z, inputs = _batch(stem)

    def dense(z: torch.Tensor) -> torch.Tensor:
        p, log_q, keep, world = module._terms(z, **inputs)
        rows = -torch.where(p, log_q, 0.0).sum(1) / p.sum(1).clamp_min(1)
        return module._mean(rows, keep, world)

    fast = _value_and_grad(lambda z: module(z, **inputs), z)
    ref = _value_and_grad(dense, z)
    assert abs(float(fast[0] - ref[0])) <= TOL
    assert float((fast[1] - ref[1]).abs().max()) <= TOL


def test_block_mode_memory_bound_is_structural() -> None:
    """Block mode never builds an N x N tensor: peak per-step allocations are N x block."""
    module = load("simclr")(block_size=4)
    z, inputs = _batch("simclr", n=64)
    seen: list[int] = []

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                seen.append(out.numel())
            return out

    z = z.requires_grad_(True)
    with Spy():
        module(z, **inputs).backward()
    assert max(seen) <= 64 * 5 * 4  # at most N x block (= 256) or N x D (= 320) entries


def test_torch_compile_gives_the_same_numbers() -> None:
    cls = load("simclr")
    z, inputs = _batch("simclr")
    eager = cls()(z, **inputs)
    compiled = torch.compile(cls(validate=False), backend="aot_eager")(z, **inputs)
    assert abs(float(eager - compiled)) <= TOL


@pytest.mark.parametrize("stem", ["sne", "tsne_joint"])
def test_torch_compile_of_the_neighbour_forward(stem: str) -> None:
    """torch.compile traces the closed-form neighbour forward (a custom autograd function
    taking the kernel as a method) and gives eager's loss and gradient."""
    cls = load(stem)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(40, 5, dtype=torch.float64, generator=g)
    z = torch.randn(40, 2, dtype=torch.float64, generator=g)
    eager = _value_and_grad(lambda z: cls()(z, x=x), z)
    loss = cls(validate=False)
    module = torch.compile(loss, backend="aot_eager")
    for _ in range(2):  # the second call reads the cached p (the check runs eagerly)
        compiled = _value_and_grad(lambda z: module(z, x=x), z)
        assert abs(float(eager[0] - compiled[0])) <= TOL
        assert float((eager[1] - compiled[1]).abs().max()) <= TOL
    assert loss._p_cache is not None


def test_torch_compile_inductor_cpu() -> None:
    """The CPU inductor backend compiles the fast path and a dense cluster-kernel spec."""
    cls = load("simclr")
    z, inputs = _batch("simclr")
    assert abs(float(torch.compile(cls(validate=False))(z, **inputs) - cls()(z, **inputs))) <= TOL
    kmeans = load("kmeans")
    g = torch.Generator().manual_seed(8)
    x = torch.randn(24, 3, dtype=torch.float64, generator=g)
    phi = torch.softmax(torch.randn(24, 10, dtype=torch.float64, generator=g), 1)
    compiled = torch.compile(kmeans(validate=False))(phi, x=x)
    assert abs(float(compiled - kmeans()(phi, x=x))) <= TOL


def _loaded(stem: str):  # type: ignore[no-untyped-def]
    """The generated class and its module namespace (to count helper calls)."""
    cls = load(stem)
    return cls, cls.forward.__globals__


@pytest.mark.parametrize(
    "stem", ["tsne", "sne", "kmeans", "debiased_infonce_clustering", "lgsimclr", "clip"]
)
def test_cached_p_gives_the_uncached_loss_gradient_and_divergence(stem: str) -> None:
    """With cache_p (the default) every call equals a module that recomputes p each time."""
    cls = load(stem)
    g = torch.Generator().manual_seed(3)
    n = 40
    inputs, _ = W.batch(cls, n, g)
    softmax = stem in ("kmeans", "debiased_infonce_clustering")
    z0 = torch.randn(n, 10 if softmax else 2, dtype=torch.float64, generator=g)
    cached, fresh = cls(), cls(cache_p=False)
    for step in range(3):  # the first call fills the cache, the next ones read it
        z = z0 + 0.1 * step * z0.roll(1, 0)
        if softmax:
            z = torch.softmax(z, dim=1)
        got = _value_and_grad(lambda z: cached(z, **inputs), z)
        want = _value_and_grad(lambda z: fresh(z, **inputs), z)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert torch.equal(cached.divergence(z, **inputs), fresh.divergence(z, **inputs))
    assert cached._p_cache is not None and fresh._p_cache is None


def test_cached_p_is_computed_once_and_recomputed_when_an_input_or_hyperparameter_changes() -> None:
    cls, namespace = _loaded("sne")
    calls = []
    search = namespace["_perplexity_beta"]

    def counting(*args):  # type: ignore[no-untyped-def]
        calls.append(1)
        return search(*args)

    namespace["_perplexity_beta"] = counting
    try:
        loss = cls()
        x = torch.rand(50, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        z = torch.randn(50, 2, dtype=torch.float64)
        first = loss(z, x=x)
        assert torch.equal(loss(z, x=x.clone()), first) and len(calls) == 1  # equal values: hit
        x[0, 0] += 1.0  # changed in place: the cache compares values, not identity
        changed = loss(z, x=x)
        assert len(calls) == 2
        loss(z.float(), x=x)  # another dtype of z: p is made again
        assert len(calls) == 3
        assert torch.equal(changed, cls(cache_p=False)(z, x=x))
    finally:
        namespace["_perplexity_beta"] = search

    kmeans = load("kmeans")(sigma=1.0)
    x = torch.rand(20, 3, dtype=torch.float64)
    z = torch.softmax(torch.randn(20, 4, dtype=torch.float64), dim=1)
    kmeans(z, x=x)
    kmeans.sigma = 0.5  # a hyperparameter p reads is part of the key
    assert torch.equal(kmeans(z, x=x), load("kmeans")(sigma=0.5, cache_p=False)(z, x=x))


def test_cached_p_is_bypassed_when_the_inputs_need_gradients_and_is_never_handed_out() -> None:
    cls = load("kmeans")
    x = torch.rand(45, 4, dtype=torch.float64).requires_grad_(True)
    z = torch.softmax(torch.randn(45, 5, dtype=torch.float64), dim=1)
    loss = cls()
    (grad_x,) = torch.autograd.grad(loss(z, x=x), x)
    assert loss._p_cache is None and bool(torch.isfinite(grad_x).all())
    assert float(grad_x.abs().sum()) > 0
    (again,) = torch.autograd.grad(loss(z, x=x), x)  # p is differentiated again, not reused
    (fresh,) = torch.autograd.grad(cls(cache_p=False)(z, x=x), x)
    assert torch.equal(again, grad_x) and torch.equal(fresh, grad_x)

    walk = load("debiased_infonce_clustering")()
    inputs = {"x": torch.rand(20, 3, dtype=torch.float64), "index": torch.arange(20) % 10}
    z = torch.softmax(torch.randn(20, 10, dtype=torch.float64), dim=1)
    p, _ = walk.distributions(z, **inputs)
    p.zero_()  # the caller's copy; the module's p is untouched
    assert torch.equal(
        walk(z, **inputs), load("debiased_infonce_clustering")(cache_p=False)(z, **inputs)
    )


@pytest.mark.parametrize(
    "stem", ["tsne", "sne", "card", "tsimclr", "debiased_tsimclr", "tsne_joint"]
)
def test_neighbour_forward_equals_the_autograd_cross_entropy(stem: str) -> None:
    """forward's closed-form gradient (`_NeighbourCrossEntropy`) equals autograd through the
    dense -sum p log q of `_terms`, value and gradient, float64."""
    cls = load(stem)
    assert "_NeighbourCrossEntropy.apply" in Path(ROOT / "generated" / f"{stem}.py").read_text()
    g = torch.Generator().manual_seed(5)
    n = 50
    inputs, _ = W.batch(cls, n, g)
    inputs["index"] = torch.arange(n) % 20  # groups of 2 and 3 views, 10 singletons
    inputs = {k: v for k, v in inputs.items() if k in cls.INPUTS}  # type: ignore[attr-defined]
    kwargs = {"sigma": 0.8} if stem == "card" else {}
    module = cls(**kwargs)

    def dense(z: torch.Tensor) -> torch.Tensor:
        p, log_q, keep, world = module._terms(z, **inputs)
        p = module._dense_p(p, log_q)
        rows = -(p * torch.where(p > 0, log_q, 0.0)).sum(1)
        return module._mean(rows, keep, world)

    for scale in (0.01, 1.0, 30.0):  # a collapsed start, a spread map, far clusters
        z = scale * torch.randn(n, 2, dtype=torch.float64, generator=g)
        fused = _value_and_grad(lambda z: module(z, **inputs), z)
        ref = _value_and_grad(dense, z)
        assert abs(float(fused[0] - ref[0])) <= TOL * max(1.0, abs(float(ref[0])))
        assert float((fused[1] - ref[1]).abs().max()) <= TOL * max(1.0, float(ref[1].abs().max()))


@pytest.mark.parametrize(
    "spec",
    [
        "param nu = 2.5\nparam s = 0.5\np = gaussian(x, perplexity=5)\n"
        "q = student_t(f(x), dof=nu, scale=s)",
        "param t = 0.3\np = knn(x, 4)\nq = gaussian(f(x), temperature=t)",
        "p = debias(knn(x, 4), 0.1)\nq = gaussian(f(x), sigma=2.5)",
        # replicated: every process computes the whole loss (a walk needs every row of p)
        "p = walk(knn(x, 4), steps=1)\nq = student_t(f(x), dof=2)",
        "p = joint(knn(x, 4))\nq = joint(gaussian(f(x), temperature=0.5))",
    ],
)
def test_neighbour_forward_with_hyperparameters_and_other_p(spec: str) -> None:
    """The sympy-derived kernel slope with hyperparameters (dof, scale, temperature) and p given
    as a mask (kNN) or probabilities (debias): value and gradient equal autograd's, float64."""
    import icon_dsl

    compiled = icon_dsl.compile("mapper = mlp(dim=2)\n" + spec)
    assert "_NeighbourCrossEntropy.apply" in compiled.source
    module = compiled.load()()
    g = torch.Generator().manual_seed(11)
    x = torch.rand(30, 5, dtype=torch.float64, generator=g)

    def dense(z: torch.Tensor) -> torch.Tensor:
        p, log_q, keep, world = module._terms(z, x=x)
        p = module._dense_p(p, log_q)
        return module._mean(-(p * torch.where(p > 0, log_q, 0.0)).sum(1), keep, world)

    z = 2 * torch.randn(30, 2, dtype=torch.float64, generator=g)
    fused = _value_and_grad(lambda z: module(z, x=x), z)
    ref = _value_and_grad(dense, z)
    assert abs(float(fused[0] - ref[0])) <= TOL * max(1.0, abs(float(ref[0])))
    assert float((fused[1] - ref[1]).abs().max()) <= TOL * max(1.0, float(ref[1].abs().max()))


@pytest.mark.parametrize("spec", sorted((ROOT / "specs").glob("*.icon")), ids=lambda p: p.stem)
def test_explain_names_the_forward_the_module_has(spec: Path) -> None:
    """`icon-dsl explain` says which lowering forward uses; it must be the generated one."""
    import icon_dsl
    from icon_dsl.explain import explain

    source = icon_dsl.compile(spec).source
    line = next(x for x in explain(spec).splitlines() if x.startswith("training forward:"))
    assert ("neighbour" in line) == ("_NeighbourCrossEntropy.apply" in source)
    assert ("contrastive" in line) == ("_contrastive_rows(" in source)


def _neighbour_cases() -> list[tuple[str, str]]:
    """The table's distinct losses whose forward is the neighbour closed form."""
    from icon_dsl.codegen.emit import has_neighbour_path

    return [(n, s) for n, s in W.specs(False) if has_neighbour_path(icon_dsl.check(s).ir)]


_NEIGHBOUR = _neighbour_cases()


@pytest.mark.parametrize(("name", "spec"), _NEIGHBOUR, ids=W.ids(_NEIGHBOUR))
def test_every_enumerated_neighbour_forward_equals_autograd(name: str, spec: str) -> None:
    """Over the whole enumerated space: the closed form equals autograd through `_terms`."""
    cls = W.load(spec)
    g = torch.Generator().manual_seed(13)
    n = 40  # above the enumerated perplexity (30)
    inputs, graph = W.batch(cls, n, g)
    module = cls(**graph)

    def dense(z: torch.Tensor) -> torch.Tensor:
        p, log_q, keep, world = module._terms(z, **inputs)
        p = module._dense_p(p, log_q)
        return module._mean(-(p * torch.where(p > 0, log_q, 0.0)).sum(1), keep, world)

    z = W.embedding(spec, module, n, g)
    fused = _value_and_grad(lambda z: module(z, **inputs), z)
    ref = _value_and_grad(dense, z)
    assert abs(float(fused[0] - ref[0])) <= 1e-9 * max(1.0, abs(float(ref[0]))), name
    scale = max(1.0, float(ref[1].abs().max()))
    assert float((fused[1] - ref[1]).abs().max()) <= 1e-9 * scale, name


_CACHED = [(n, s) for n, s in W.specs() if "cache_p" in icon_dsl.compile(s).source]


@pytest.mark.parametrize(("name", "spec"), _CACHED, ids=W.ids(_CACHED))
def test_every_enumerated_cached_p_equals_the_uncached_module(name: str, spec: str) -> None:
    """Over the whole enumerated space: a module that keeps p gives, call after call, exactly
    the loss, gradient and divergence of one that recomputes it."""
    cls = W.load(spec)
    g = torch.Generator().manual_seed(17)
    n = 40
    inputs, graph = W.batch(cls, n, g)
    torch.manual_seed(0)  # the same prototypes in both modules
    cached = cls(**graph).double()
    torch.manual_seed(0)
    fresh = cls(cache_p=False, **graph).double()
    z0 = W.embedding(spec, cached, n, g)
    for step in range(2):
        z = z0 * (1 + 0.3 * step) if "softmax=true" not in spec else z0.roll(step, 0)
        got = _value_and_grad(lambda z: cached(z, **inputs), z)
        want = _value_and_grad(lambda z: fresh(z, **inputs), z)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), name
        assert bool(torch.isfinite(got[1]).all()), name  # a trainable gradient, never NaN
        assert torch.equal(cached.divergence(z, **inputs), fresh.divergence(z, **inputs)), name
    assert cached._p_cache is not None


_ALL = W.specs()


@pytest.mark.parametrize(("name", "spec"), _ALL, ids=W.ids(_ALL))
def test_every_enumerated_loss_is_finite_with_a_finite_gradient(name: str, spec: str) -> None:
    """Every accepted cell of the table trains: on a random batch its loss and the gradient in
    z (and in the prototypes) are finite, float32 as in training."""
    cls = W.load(spec)
    g = torch.Generator().manual_seed(19)
    n = 40
    inputs, graph = W.batch(cls, n, g, torch.float32)
    module = cls(**graph)
    z = W.embedding(spec, module, n, g).float().requires_grad_(True)
    value = module(z, **inputs)
    value.backward()
    assert bool(torch.isfinite(value)), name
    assert z.grad is not None and bool(torch.isfinite(z.grad).all()), name
    prototypes = getattr(module, "prototypes", None)
    if prototypes is not None:
        assert prototypes.grad is not None and bool(torch.isfinite(prototypes.grad).all()), name
