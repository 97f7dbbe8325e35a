"""float32 / bfloat16 and extreme inputs: never NaN or inf, and close to float64.

Tolerances (relative to the float64 loss): float32 1e-4, bfloat16 5e-2 (8 bits of mantissa).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import whole_table as W

import icon_dsl

TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 5e-2}


def _module(text: str, **hypers: float) -> Any:
    return icon_dsl.compile(text).load()(**hypers)


def _check(module: torch.nn.Module, z: torch.Tensor, inputs: dict, dtype: torch.dtype) -> None:
    ref = module(z.double(), **inputs)
    zz = z.to(dtype).requires_grad_(True)
    got = module(zz, **{k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()})
    (grad,) = torch.autograd.grad(got, zz)
    assert torch.isfinite(got) and torch.isfinite(grad).all()
    got, ref = float(got.detach()), float(ref.detach())
    assert abs(got - ref) <= TOLERANCE[dtype] * max(1.0, abs(ref))


SIMCLR = "mapper = mlp\np = augmentation(index)\nq = gaussian(f(x), sigma=s, metric={m})"
SUPCON = "mapper = mlp\np = label(y)\nq = gaussian(f(x), temperature=t, metric=cosine)"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("sigma", [1e-3, 1.0, 1e3])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_contrastive_extreme_widths(dtype: torch.dtype, sigma: float, metric: str) -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 8, generator=g)
    z[3] = z[11]  # duplicate points
    z[5] = 0.0  # a zero vector under cosine
    index = torch.arange(8).repeat(2)
    _check(_module(SIMCLR.format(m=metric), s=sigma), z, {"index": index}, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_supcon_singleton_class_low_precision(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(12, 8, generator=g)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 9])  # class 9 appears once
    module = _module(SUPCON, t=0.1)
    _check(module, z, {"y": y}, dtype)
    assert module.last_dropped_rows == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("sigma", [1e-3, 1e3])
def test_dense_kernels_extreme_widths(dtype: torch.dtype, sigma: float) -> None:
    """Student-t and Gaussian p on x (the dense path), with duplicate points."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(14, 5, generator=g)
    x[2] = x[7]
    z = torch.randn(14, 2, generator=g)
    z[4] = z[9]
    text = "mapper = table\np = gaussian(x, sigma=s)\nq = student_t(f(x), scale=s)"
    _check(_module(text, s=sigma), z, {"x": x.double()}, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kmeans_low_precision(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20, 4, generator=g).double()
    logits = torch.randn(20, 10, generator=g)
    text = "mapper = linear(softmax=true)\np = gaussian(x, sigma=1, diagonal=true)\n"
    text += "q = cluster(f(x))\nloss = reverse_kl(p, q)"
    module = _module(text)
    ref = module(torch.softmax(logits.double(), 1), x=x)
    got = module(torch.softmax(logits.to(dtype), 1), x=x.to(dtype))
    assert torch.isfinite(got)
    got, ref = float(got.detach()), float(ref.detach())
    assert abs(got - ref) <= TOLERANCE[dtype] * max(1.0, abs(ref))


@pytest.mark.parametrize("divergence", ["reverse_kl", "kl", "js"])
def test_hard_cluster_assignments_give_finite_gradients(divergence: str) -> None:
    """q = cluster(f(x)) is exactly 0 between points with disjoint assignments. Those entries
    add 0 log 0 = 0 to the reverse KL and JS; their one-sided derivative is unbounded, and the
    generated loss gives them a zero gradient (no 0 * inf = NaN that would stop training)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(12, 3, generator=g).double()
    hard = torch.nn.functional.one_hot(torch.arange(12) % 3, 4).double()  # cluster 3 is empty
    text = "mapper = linear(softmax=true)\np = gaussian(x, sigma=1, diagonal=true)\n"
    text += f"q = cluster(f(x))\nloss = {divergence}(p, q)"
    module = _module(text)
    z = hard.clone().requires_grad_(True)
    value = module(z, x=x)
    (grad,) = torch.autograd.grad(value, z)
    if divergence == "kl":  # p > 0 where q = 0: KL(p || q) is infinite, and says so
        assert value == math.inf
        return
    assert torch.isfinite(grad).all()
    # the value: same-cluster pairs only, written out (q = 1/3 within each cluster of 4)
    p, q = module.distributions(z.detach(), x=x)
    assert bool(((q == 0) == (hard @ hard.T == 0)).all())
    if divergence == "reverse_kl":
        inside = q > 0
        expected = (q[inside] * (q[inside].log() - p[inside].log())).sum() / 12
        assert abs(float(value.detach()) - float(expected)) <= 1e-12


def test_batch_with_no_usable_row_raises() -> None:
    module = _module(SUPCON, t=0.1)
    with pytest.raises(ValueError, match="no anchor in this batch has a non-empty row of p"):
        module(torch.randn(5, 3), y=torch.arange(5))


def test_nan_embedding_is_named() -> None:
    module = _module(SUPCON, t=0.1)
    z = torch.randn(4, 3)
    z[1, 2] = math.nan
    with pytest.raises(ValueError, match="z contains NaN or inf"):
        module(z, y=torch.tensor([0, 0, 1, 1]))


_LOSSES = W.specs(mapper=False)


@pytest.mark.parametrize(("name", "spec"), _LOSSES, ids=W.ids(_LOSSES))
def test_every_enumerated_loss_in_float32_matches_float64(name: str, spec: str) -> None:
    """The whole table in training precision: float32 within 1e-4 relative of float64."""
    cls = W.load(spec)
    g = torch.Generator().manual_seed(23)
    n = 64
    inputs, graph = W.batch(cls, n, g)
    torch.manual_seed(0)
    exact = cls(**graph).double()
    torch.manual_seed(0)
    single = cls(**{k: v.float() for k, v in graph.items()}).float()
    z = W.embedding(spec, exact, n, g, scale=2.0)
    ref = float(exact(z, **inputs).detach())
    low = {k: v.float() if v.is_floating_point() else v for k, v in inputs.items()}
    got = float(single(z.float(), **low).detach())
    assert abs(got - ref) <= TOLERANCE[torch.float32] * max(1.0, abs(ref)), (name, got, ref)
