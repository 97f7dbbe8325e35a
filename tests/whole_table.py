"""The enumerated periodic table as test cases: one spec per distinct loss, and batches for them.

Whole-table tests (agreement with the interpreter, the closed forms, the p cache, precision,
distributed runs) walk the same space: every cell `icon_dsl.enumerate_methods` lists with the
debias modifier. Specs that differ only in their `method` line (or, with `mapper=False`, also
in their mapper) are one case.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

import icon_dsl
from icon_dsl.enumeration import enumerate_methods


@functools.cache
def specs(mapper: bool = True) -> tuple[tuple[str, str], ...]:
    """(name, spec) for every distinct loss of the table (and mapper, unless mapper=False)."""
    dropped = ("method",) if mapper else ("method", "mapper")
    seen, out = set(), []
    for candidate in enumerate_methods(probe=False, modifiers=("debias",)):
        lines = candidate.spec.splitlines()
        key = "\n".join(line for line in lines if not line.startswith(dropped))
        if key not in seen:
            seen.add(key)
            out.append((candidate.name, candidate.spec))
    return tuple(out)


def ids(cases: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> list[str]:
    return [name for name, _ in cases]


@functools.cache
def compiled(spec: str) -> icon_dsl.api.CompiledModule:
    """The spec compiled once per session (whole-table tests share it); load() runs it fresh."""
    return icon_dsl.compile(spec)


def load(spec: str) -> type[Any]:
    return compiled(spec).load()


def batch(
    cls: type[Any], n: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(forward inputs, constructor tensors) for the module class `cls` on a batch of n rows.

    Vectors are uniform in [0, 1)^6, views come in pairs (`index`), labels in 4 classes,
    modalities in two halves; a graph spec gets random symmetric weights over the batch (its
    `index` is then the row number).
    """
    inputs: dict[str, torch.Tensor] = {}
    for name in cls.INPUTS:  # type: ignore[attr-defined]
        if name in ("x", "side"):
            inputs[name] = torch.rand(n, 6, dtype=dtype, generator=generator)
        elif name == "y":
            inputs[name] = torch.arange(n) % 4
        elif name == "index":
            inputs[name] = torch.arange(n) % (n // 2)
        elif name == "modality":
            inputs[name] = torch.arange(n) // (n // 2)
    graph: dict[str, torch.Tensor] = {}
    if "adjacency" in cls.__init__.__code__.co_varnames:  # type: ignore[misc]
        weights = torch.rand(n, n, dtype=dtype, generator=generator)
        graph["adjacency"] = (weights + weights.T) * (torch.rand(n, n, generator=generator) < 0.4)
        inputs["index"] = torch.arange(n)
    return inputs, graph


def embedding(
    spec: str, module: torch.nn.Module, n: int, generator: torch.Generator, scale: float = 1.0
) -> torch.Tensor:
    """A random z (float64) the module accepts: soft assignments for softmax mappers, the
    prototypes' width when q has prototypes, else 3 columns."""
    softmax = "softmax=true" in spec
    prototypes = getattr(module, "prototypes", None)
    dim = 10 if softmax else 3 if prototypes is None else prototypes.shape[1]
    z = scale * torch.randn(n, dim, dtype=torch.float64, generator=generator)
    return torch.softmax(z, dim=1) if softmax else z
