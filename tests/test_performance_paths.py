"""The fast lowering, row blocks and torch.compile give the dense form's numbers (float64)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-10


def load(stem: str) -> type:
    spec = importlib.util.spec_from_file_location(f"perf_{stem}", ROOT / "generated" / f"{stem}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return next(
        v
        for k, v in vars(module).items()
        if isinstance(v, type) and issubclass(v, torch.nn.Module) and not k.startswith("_")
    )


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
