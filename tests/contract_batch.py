"""A small valid batch for a generated module, from the module alone (no icon_dsl import).

Used in-process by tests/test_contract.py and, copied, by its subprocess in which importing
icon_dsl fails. The batch is built the way training builds one: the module's own mapper
(`build_mapper`) applied to features or sample indices gives z, so z has the mapper's width,
sphere or softmax.
"""

from __future__ import annotations

import inspect

import torch


def forward_batch(
    cls: type, n: int, labels: int, seed: int = 0
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.nn.Module, torch.Tensor]:
    """(forward inputs, constructor tensors, mapper, mapper input) for n rows.

    n items are n/2 samples seen twice: `index` pairs them, `modality` is 0 for the first
    half and 1 for the second; `y` cycles through `labels` classes; a graph spec gets random
    symmetric weights over n items.
    """
    g = torch.Generator().manual_seed(seed)
    half = n // 2
    inputs: dict[str, torch.Tensor] = {}
    features = torch.randn(n, 5, generator=g)
    for name in cls.INPUTS:  # type: ignore[attr-defined]
        if name == "x":
            inputs[name] = features
        elif name == "side":
            inputs[name] = torch.randn(n, 3, generator=g)
        elif name == "y":
            inputs[name] = torch.arange(n) % labels
        elif name == "index":
            inputs[name] = torch.arange(n) % half
        elif name == "modality":
            inputs[name] = torch.arange(n) // half
    graph: dict[str, torch.Tensor] = {}
    if "adjacency" in inspect.signature(cls).parameters:
        weights = torch.rand(n, n, generator=g)
        ring = torch.arange(n)
        weights = (weights + weights.T) * (torch.rand(n, n, generator=g) < 0.3)
        weights[ring, (ring + 1) % n] = weights[(ring + 1) % n, ring] = 1.0  # no lone node
        graph["adjacency"] = weights
    torch.manual_seed(seed)
    mapper = cls.build_mapper(5, num_samples=n)  # type: ignore[attr-defined]
    table = cls.MAPPER_INPUT == "index"  # type: ignore[attr-defined]
    mapper_input = torch.arange(n) % half if table else features
    return inputs, graph, mapper, mapper_input


def run_once(
    cls: type, kwargs: dict[str, float], n: int, labels: int, seed: int = 0
) -> tuple[float, bool]:
    """(the loss, whether every gradient is finite) for one forward and backward in float32."""
    inputs, graph, mapper, mapper_input = forward_batch(cls, n, labels, seed)
    torch.manual_seed(seed)
    module = cls(**kwargs, **graph)
    z = mapper(mapper_input)
    loss = module(z, **inputs)
    loss.backward()
    grads = [p.grad for p in (*mapper.parameters(), *module.parameters()) if p.grad is not None]
    finite = bool(torch.isfinite(loss)) and all(bool(torch.isfinite(t).all()) for t in grads)
    return float(loss.detach()), finite
