"""Generated code that holds whatever `check` accepts: names, numbers, sizes, precision.

(a) names from a spec never collide with each other or with the module's own names;
(b) numbers reach the module as finite literals, or check / compile refuses them, located;
(c) mapper options and sizes: hyperparameters refused there, sizes bounded;
(d) kernels with an infinite slope at d2 = 0 (sqrt(d2)) have finite, exact gradients at
    duplicate points; narrow widths stay finite in float32 or are refused with their range;
    inputs whose distances would overflow are reported by validate=True;
(e) precision: float16, bfloat16 and float64 z, and autocast. Half precision is computed in
    float32, so every bundled module matches float64 on the same (rounded) z within 1e-4
    relative; its gradient has z's dtype.
"""

from __future__ import annotations

import ast
import inspect
import math
from pathlib import Path

import pytest
import torch
import whole_table as W

import icon_dsl
from icon_dsl import SpecError

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "generated"
F64 = torch.float64

SIMCLR = """
mapper = linear(dim=3)
p = augmentation(index)
q = gaussian(f(x), temperature={t}, metric=cosine)
loss = kl(p, q)
"""


def _compile(text: str) -> type:
    return icon_dsl.compile(text.strip() + "\n").load()


def _views(n: int) -> torch.Tensor:
    return torch.arange(n // 2).repeat(2)


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _nt_xent(z: torch.Tensor, index: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR's loss written out in float64."""
    zn = torch.nn.functional.normalize(z.double(), dim=1)
    eye = torch.eye(len(z), dtype=torch.bool)
    s = (zn @ zn.T / tau).masked_fill(eye, -math.inf)
    same = (index[:, None] == index[None, :]) & ~eye
    return torch.nn.functional.cross_entropy(s, same.double().argmax(1))


def _assert_located(error: SpecError, code: str) -> None:
    # a number out of the front end's range is refused as number-size before its value is used
    assert code in error.codes or (code == "domain" and "number-size" in error.codes), str(error)
    errors = [d for d in error.diagnostics if d.severity == "error"]
    assert errors and all(d.span is not None for d in errors), str(error)


# ----------------------------------------------------------------------------- (a) names


@pytest.mark.parametrize(
    "names",
    [["cache_p"], ["self", "self_"], ["_x", "h_x"], ["n", "n_"], ["validate", "validate_"]],
    ids=["cache_p", "self_self_", "_x_h_x", "n_n_", "validate"],
)
def test_hyperparameters_get_distinct_constructor_arguments(names):
    params = "".join(f"param {name} = 1\n" for name in names)
    cls = _compile(params + SIMCLR.format(t=" * ".join(names)))
    arguments = list(inspect.signature(cls).parameters)
    assert len(arguments) == len(set(arguments))
    hypers = arguments[: len(names)]  # the spec's own come first, then validate, gather, ...
    assert not set(hypers) & {"validate", "gather", "block_size", "cache_p"}
    z, index = _randn(6, 3), _views(6)
    # each hyperparameter acts: halving one halves the temperature (a product of them)
    for name in hypers:
        loss = cls(**{name: 0.5})(z, index=index)
        assert abs(float(loss) - float(_nt_xent(z, index, 0.5))) <= 1e-10


def _module_identifiers() -> list[str]:
    """Every name a bundled generated module binds or reads (locals, attributes, arguments)."""
    found: set[str] = set()
    for path in sorted(GENERATED.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Name):
                found.add(node.id)
            elif isinstance(node, ast.Attribute):
                found.add(node.attr)
            elif isinstance(node, ast.arg):
                found.add(node.arg)
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                found.add(node.name)
    return sorted(found)


def _spec_accepts(name: str) -> bool:
    try:
        icon_dsl.check(f"param {name} = 1\n" + SIMCLR.format(t=name))
    except SpecError:
        return False  # a name of the language: refused, located (test_errors)
    return True


def test_every_name_a_generated_module_uses_works_as_a_hyperparameter():
    """All of them at once: temperature is their product, each defaults to 1; the module loads
    and setting any one to 0.5 gives SimCLR at temperature 0.5."""
    names = [n for n in _module_identifiers() if _spec_accepts(n)]
    assert len(names) > 150
    z, index = _randn(6, 3), _views(6)
    reference = float(_nt_xent(z, index, 0.5))
    for start in range(0, len(names), 10):  # a product of 10: within the nesting limit
        group = names[start : start + 10]
        params = "".join(f"param {name} = 1\n" for name in group)
        cls = _compile(params + SIMCLR.format(t=" * ".join(group)))
        arguments = list(inspect.signature(cls).parameters)
        hypers = arguments[: len(group)]  # the spec's own, then validate, gather, ...
        assert len(set(arguments)) == len(arguments)
        assert abs(float(cls()(z, index=index)) - float(_nt_xent(z, index, 1.0))) <= 1e-10
        for kw in hypers:
            assert abs(float(cls(**{kw: 0.5})(z, index=index)) - reference) <= 1e-10, kw


@pytest.mark.parametrize("method", ["f", "F", "tensor", "module", "torch", "math"])
def test_a_method_name_never_hides_a_module_level_name(method):
    module = icon_dsl.compile(f"method {method}\n" + SIMCLR.format(t="0.5").strip() + "\n")
    assert module.class_name not in ("F", "Tensor", "Module", "torch", "math")
    z, index = _randn(6, 3), _views(6)
    loss = module.load()()(z, index=index)
    assert abs(float(loss) - float(_nt_xent(z, index, 0.5))) <= 1e-10


@pytest.mark.parametrize("stem", ["f", "torch", "math", "typing", "functools"])
def test_a_file_stem_never_shadows_an_import(stem, tmp_path):
    path = tmp_path / f"{stem}.icon"
    path.write_text(SIMCLR.format(t="0.5").strip() + "\n", encoding="utf-8")
    module = icon_dsl.compile(path)
    assert module.stem != stem or stem == "f"
    assert module.class_name != "F"
    written = module.write(tmp_path / "out")
    assert written.stem not in ("torch", "math", "typing", "functools")


# ----------------------------------------------------------------------------- (b) numbers


@pytest.mark.parametrize(
    "text",
    [
        "param s = 0/0\n" + SIMCLR.format(t="s"),
        "param s = 10^400\n" + SIMCLR.format(t="s"),
        SIMCLR.format(t="1e-320"),
        SIMCLR.format(t="0.5")
        .replace("gaussian(f(x), temperature=0.5, metric=cosine)", "normalize(k(f(x)))")
        .replace("mapper", "kernel k(d2) = exp(-d2 * 1e308*10)\nmapper"),
    ],
    ids=["nan_default", "inf_default", "denormal_temperature", "kernel_1e309"],
)
def test_numbers_a_module_cannot_hold_are_refused_located(text):
    with pytest.raises(SpecError) as info:
        icon_dsl.compile(text)
    _assert_located(info.value, "domain")


def test_every_emitted_number_is_a_finite_literal():
    """Kernels and expressions with huge exact integers print as floats, never 300 digits."""
    text = SIMCLR.format(t="t * 10^300 / 10^299").replace("mapper", "param t = 0.05\nmapper")
    module = icon_dsl.compile(text)
    for node in ast.walk(ast.parse(module.source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            assert math.isfinite(node.value), node.value
            assert isinstance(node.value, float) or abs(node.value) <= 2**53, node.value
    z, index = _randn(6, 3), _views(6)
    assert abs(float(module.load()()(z, index=index)) - float(_nt_xent(z, index, 0.5))) <= 1e-10


@pytest.mark.parametrize("body", ["0", "1", "exp(-d2) * exp(d2)", "0 * d2"])
def test_a_kernel_that_ignores_d2_is_refused_located(body):
    """w(d2) constant (0 included): q would not depend on z (or be 0 / 0)."""
    text = SIMCLR.format(t="0.5").replace(
        "gaussian(f(x), temperature=0.5, metric=cosine)", "normalize(k(f(x)))"
    )
    with pytest.raises(SpecError) as info:
        icon_dsl.compile(f"kernel k(d2) = {body}\n" + text)
    _assert_located(info.value, "kernel-definition")
    assert "does not depend on d2" in str(info.value)


def test_a_union_of_ten_thousand_terms_is_refused_located():
    """10,000 union operands are past the front end's limits: a located error, no RecursionError."""
    many = ", ".join(["augmentation(index)"] * 10_000)
    text = SIMCLR.format(t="0.5").replace("augmentation(index)", f"union({many})")
    with pytest.raises(SpecError) as caught:
        icon_dsl.compile(text)
    assert {"spec-too-large", "too-many-terms"} & set(caught.value.codes), str(caught.value)
    assert all(d.span is not None for d in caught.value.diagnostics if d.severity == "error")


def test_block_size_must_be_a_positive_integer():
    cls = _compile(SIMCLR.format(t="0.5"))
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="block_size"):
            cls(block_size=bad)
    z, index = _randn(6, 3), _views(6)
    assert abs(float(cls(block_size=2)(z, index=index)) - float(_nt_xent(z, index, 0.5))) < 1e-10


# ----------------------------------------------------------------------------- (c) mapper


@pytest.mark.parametrize(
    "mapper", ["table(dim=d)", "mlp(dim=3, hidden=d, depth=2)", "linear(d)", "mlp(depth=d)"]
)
def test_hyperparameters_in_mapper_options_are_refused_located(mapper):
    text = "param d = 2\n" + SIMCLR.format(t="0.5").replace("linear(dim=3)", mapper)
    with pytest.raises(SpecError) as info:
        icon_dsl.check(text)
    _assert_located(info.value, "bad-argument")
    assert "mapper option" in str(info.value)
    assert "`d`" in str(info.value)


def test_prototype_specs_refuse_a_hyperparameter_dim_too():
    text = """param d = 2
    mapper = mlp(dim=d, hidden=4, depth=2)
    p = classes(y, 10)
    q = gaussian(f(x), prototypes(10), metric=dot, temperature=1)"""
    with pytest.raises(SpecError) as info:
        icon_dsl.check("\n".join(line.strip() for line in text.splitlines()))
    _assert_located(info.value, "bad-argument")


@pytest.mark.parametrize(
    "change,slot",
    [
        (("linear(dim=3)", "linear(dim=99999999999999999999)"), "dim"),
        (("linear(dim=3)", "mlp(dim=3, hidden=10000000)"), "hidden"),
        (("linear(dim=3)", "mlp(dim=3, depth=1000)"), "depth"),
        (("augmentation(index)", "walk(augmentation(index), 10^9)"), "steps"),
    ],
)
def test_sizes_are_bounded_at_check(change, slot):
    with pytest.raises(SpecError) as info:
        icon_dsl.check(SIMCLR.format(t="0.5").replace(*change))
    _assert_located(info.value, "domain")
    assert f"{slot} an integer from 1 to" in str(info.value)


# ----------------------------------------------------------------------------- (d) numerics

LAPLACE = """
param b = 0.7
kernel laplace(d2, b) = exp(-sqrt(d2) / b)
mapper = linear(dim=3)
p = augmentation(index)
q = normalize(laplace(f(x), b=b{diagonal}))
loss = kl(p, q)
"""


def _laplace_reference(z: torch.Tensor, index: torch.Tensor, b: float, diagonal: bool):
    """The same loss from torch.cdist (whose gradient at distance 0 is 0), float64."""
    n = len(z)
    eye = torch.eye(n, dtype=torch.bool)
    logits = -torch.cdist(z, z) / b
    if not diagonal:
        logits = logits.masked_fill(eye, -math.inf)
    same = ((index[:, None] == index[None, :]) & ~eye).double()
    p = same / same.sum(1, keepdim=True)
    log_q = torch.log_softmax(logits, dim=1)
    return -(p * torch.where(p > 0, log_q, 0.0)).sum(1).mean()


@pytest.mark.parametrize("diagonal", [False, True])
def test_sqrt_kernel_has_exact_gradients_at_duplicate_points(diagonal):
    """A Laplace kernel exp(-sqrt(d2)/b): d sqrt(d2) is infinite at d2 = 0 (the diagonal and
    duplicate points). The module puts the limit there with slope 0: the loss and gradient
    equal torch.cdist's, which treats a zero distance the same way."""
    cls = _compile(LAPLACE.format(diagonal=", diagonal=true" if diagonal else ""))
    z = _randn(8, 3)
    z[5] = z[1]  # duplicates: a pair of views ...
    z[6] = z[3]  # ... and two different samples
    index = _views(8)
    got_z = z.clone().requires_grad_(True)
    got = cls()(got_z, index=index)
    (grad,) = torch.autograd.grad(got, got_z)
    ref_z = z.clone().requires_grad_(True)
    ref = _laplace_reference(ref_z, index, 0.7, diagonal)
    (ref_grad,) = torch.autograd.grad(ref, ref_z)
    assert torch.isfinite(grad).all()
    assert abs(float(got) - float(ref)) <= 1e-12
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


def test_a_kernel_of_f_that_can_vanish_is_refused():
    """w = b * d2 is 0 at a duplicate point: q(j|i) = 0 there (an infinite KL where p has
    mass) and 0 / 0 on a row whose points all coincide, so check refuses it, located at the
    kernel's call, whatever wraps it."""
    for q in ("normalize(ramp(f(x), b=b))", "debias(normalize(ramp(f(x), b=b)), 0.5)"):
        text = LAPLACE.format(diagonal="").replace(
            "laplace(d2, b) = exp(-sqrt(d2) / b)", "ramp(d2, b) = b * d2"
        )
        text = text.replace("normalize(laplace(f(x), b=b))", q)
        with pytest.raises(icon_dsl.SpecError) as info:
            icon_dsl.compile(text.strip() + "\n")
        (error,) = [d for d in info.value.diagnostics if d.severity == "error"]
        assert error.code == "kernel-not-positive" and error.span is not None
        assert text.strip()[error.span.start : error.span.end] == "ramp(f(x), b=b)"
    # made positive (b d2 + exp(-d2) > 0 for every d2 >= 0), it compiles
    ok = LAPLACE.format(diagonal="").replace("exp(-sqrt(d2) / b)", "b * d2 + exp(-d2)")
    assert icon_dsl.compile(ok.strip() + "\n").load() is not None


@pytest.mark.parametrize(
    "spec,kwargs,range_",
    [
        (SIMCLR.format(t="t"), {"t": 1e-45}, "1e-30 <= t <= 1e30"),
        (SIMCLR.format(t="t"), {"t": 1e31}, "1e-30 <= t <= 1e30"),
        (SIMCLR.format(t="1").replace("temperature=1", "sigma=s"), {"s": 1e-30}, "1e-15 <= s"),
        (
            "mapper = table\np = gaussian(x, sigma=1)\nq = student_t(f(x), dof=d)",
            {"d": 1e-40},
            "1e-30 <= d <= 1e30",
        ),
    ],
    ids=["temperature_1e-45", "temperature_1e31", "sigma_1e-30", "dof_1e-40"],
)
def test_widths_outside_the_working_range_are_refused_at_construction(spec, kwargs, range_):
    cls = _compile(spec)
    with pytest.raises(ValueError, match=range_):
        cls(**kwargs)


def _scaled_nt_xent(z: torch.Tensor, index: torch.Tensor, tau: float) -> float:
    """NT-Xent in float64 with the row max taken out before dividing by tau (so a tiny tau
    does not overflow float64 either)."""
    zn = torch.nn.functional.normalize(z.double(), dim=1)
    eye = torch.eye(len(z), dtype=torch.bool)
    cos = (zn @ zn.T).masked_fill(eye, -math.inf)
    top = cos.max(1, keepdim=True).values
    s = (cos - top) / tau
    same = ((index[:, None] == index[None, :]) & ~eye).double().argmax(1)
    return float(torch.nn.functional.cross_entropy(s, same))


@pytest.mark.parametrize(
    "tau,dtype",
    [(1e-30, torch.float32), (1e-8, torch.float16), (1e-8, torch.bfloat16), (1e-30, F64)],
)
def test_narrowest_temperatures_stay_finite(tau, dtype):
    """The narrowest temperature allowed (1e-30) in float32, and 1e-8 with half precision z:
    the loss is finite and equals the float64 value on the same z, within 1e-4 relative."""
    cls = _compile(SIMCLR.format(t="t"))
    index = _views(8)
    z = _randn(8, 3).to(dtype).requires_grad_(True)
    loss = cls(t=tau)(z, index=index)
    (grad,) = torch.autograd.grad(loss, z)
    expected = _scaled_nt_xent(z.detach(), index, tau)
    assert torch.isfinite(loss) and math.isfinite(expected)
    assert abs(float(loss) - expected) <= 1e-4 * max(1.0, abs(expected))
    assert grad.dtype == dtype and not torch.isnan(grad).any()


def test_tsne_with_huge_embeddings_is_reported_by_validate():
    tsne = W.load((ROOT / "specs" / "tsne.icon").read_text(encoding="utf-8"))
    x = _randn(40, 5, seed=1)
    z = _randn(40, 2, seed=2, dtype=torch.float32) * 1e20
    with pytest.raises(ValueError, match=r"z has entries up to [\d.]+e\+20.*overflow"):
        tsne()(z, x=x)
    # the same embeddings in float64 are fine: the bound follows the dtype
    assert torch.isfinite(tsne()(z.double(), x=x))


def test_huge_features_are_reported_by_validate():
    text = "mapper = table\np = gaussian(x, sigma=1)\nq = student_t(f(x))"
    cls = _compile(text)
    x = _randn(10, 4, dtype=torch.float32) * 1e30
    with pytest.raises(ValueError, match="x has entries up to"):
        cls()(_randn(10, 2), x=x)


# ----------------------------------------------------------------------------- (e) precision

STEMS = sorted(p.stem for p in (ROOT / "specs").glob("*.icon"))
HALF = (torch.float16, torch.bfloat16)


def _bundled_case(stem: str):
    """The bundled module (from generated/), a float64 instance, its inputs and a z."""
    cls = W.load((ROOT / "specs" / f"{stem}.icon").read_text(encoding="utf-8"))
    g = torch.Generator().manual_seed(7)
    n = 64
    inputs, graph = W.batch(cls, n, g)
    torch.manual_seed(0)
    required = {  # hyperparameters without a default (card's sigma)
        name: 1.0
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is inspect.Parameter.empty and name not in ("self", *graph)
    }
    module = cls(**graph, **required)
    z = W.embedding(Path(ROOT / "specs" / f"{stem}.icon").read_text(), module, n, g)
    return module, inputs, z


def _loss(module, z, inputs, dtype):
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    zz = z.to(dtype).requires_grad_(True)
    loss = module(zz, **cast)
    (grad,) = torch.autograd.grad(loss, zz)
    return loss, grad, zz.detach()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, F64], ids=str)
@pytest.mark.parametrize("stem", STEMS)
def test_bundled_modules_in_every_dtype(stem, dtype):
    """Half precision z is computed in float32: the loss equals float64 on the same rounded z
    (and inputs) within 1e-4 relative; float64 is computed in float64 (1e-12). Parameters
    (prototypes) follow z's dtype; the gradient has z's dtype and is finite."""
    module, inputs, z = _bundled_case(stem)
    loss, grad, rounded = _loss(module, z, inputs, dtype)
    exact_inputs = {
        k: v.to(dtype).double() if v.is_floating_point() else v for k, v in inputs.items()
    }
    module.validate = False  # rounded soft assignments sum to 1 within z's own precision
    expected = float(module(rounded.double(), **exact_inputs))
    tolerance = 1e-12 if dtype == F64 else 1e-4
    assert grad.dtype == dtype and bool(torch.isfinite(grad.double()).all())
    assert abs(float(loss) - expected) <= tolerance * max(1.0, abs(expected)), (
        float(loss),
        expected,
    )


@pytest.mark.parametrize("stem", STEMS)
def test_bundled_modules_under_cpu_autocast(stem):
    """Under torch.autocast (CPU, bfloat16) the loss is computed as without it: autocast is
    off inside forward, so the matmuls of the distances are not rounded to bfloat16."""
    module, inputs, z = _bundled_case(stem)
    cast = {k: v.float() if v.is_floating_point() else v for k, v in inputs.items()}
    zz = z.float().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = module(zz, **cast)
    (grad,) = torch.autograd.grad(loss, zz)
    plain = module(z.float(), **cast)
    assert loss.dtype == torch.float32 and grad.dtype == torch.float32
    assert abs(float(loss) - float(plain)) <= 1e-6 * max(1.0, abs(float(plain)))
    assert torch.isfinite(grad).all()
