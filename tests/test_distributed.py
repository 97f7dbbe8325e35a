"""Distributed equivalence: 2 processes on gloo (CPU, float64) against one process.

Under DistributedDataParallel, each process holds half of the batch; the generated loss gathers
the columns across processes. The loss averaged over the processes must equal the one-process
loss on the concatenated batch, and the parameter gradients after DDP's averaging must equal the
one-process gradients (tolerance 1e-8).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import ROOT
from torch import nn

import icon_dsl

TOL = 1e-8
N, D_IN = 16, 6
WORLD = 2

PARAMETRIC_TSNE = """
method parametric_tsne
mapper = mlp(dim=2, hidden=8, depth=2)
p = gaussian(x, perplexity=4)
q = student_t(f(x), dof=1)
"""

PARAMETRIC_TSNE_JOINT = """
method parametric_tsne_joint
mapper = mlp(dim=2, hidden=8, depth=2)
p = joint(gaussian(x, perplexity=4))
q = joint(student_t(f(x), dof=1))
"""

CASES: dict[str, tuple[Path | str, dict]] = {
    "simclr": (ROOT / "specs" / "simclr.icon", {}),
    "supcon": (ROOT / "specs" / "supcon.icon", {}),
    "clip": (ROOT / "specs" / "clip.icon", {"temperature": 0.5}),
    "cross_entropy": (ROOT / "specs" / "cross_entropy.icon", {}),
    "kmeans": (ROOT / "specs" / "kmeans.icon", {"sigma": 1.5}),
    "parametric_tsne": (PARAMETRIC_TSNE, {}),
    "parametric_tsne_joint": (PARAMETRIC_TSNE_JOINT, {}),
}


def _enumerated_cases() -> dict[str, tuple[str, dict]]:
    """One spec per family of the enumerated table (p, q, divergence, modifiers, input) with
    an mlp: the whole space's lowerings, distributed. Graph specs are left out (their
    adjacency is over a data set, not a batch); perplexity 30 becomes 5 for a batch of 16."""
    from icon_dsl.enumeration import enumerate_methods

    seen: set[tuple[object, ...]] = set()
    out: dict[str, tuple[str, dict]] = {}
    for c in enumerate_methods(probe=False, modifiers=("debias",), mappers=["mlp"]):
        key = (c.p, c.q, c.divergence, c.modifiers, c.input)
        if key not in seen and "graph" not in c.spec:
            seen.add(key)
            out[f"table:{c.name}"] = (c.spec.replace("perplexity=30", "perplexity=5"), {})
    return out


CASES.update(_enumerated_cases())
# compiled with --normaliser exact (row blocks of 3 rows, across the two processes' halves)
BLOCKS: dict[str, tuple[Path | str, dict]] = {
    "parametric_tsne:blocks": (PARAMETRIC_TSNE, {"block_size": 3}),
    "kmeans:blocks": (ROOT / "specs" / "kmeans.icon", {"sigma": 1.5, "block_size": 3}),
    "spectral:blocks": (ROOT / "specs" / "spectral.icon", {"block_size": 3}),
}
CASES.update(BLOCKS)


def _text(spec: Path | str) -> str:
    return spec.read_text(encoding="utf-8") if isinstance(spec, Path) else spec


class Model(nn.Module):
    """The spec's mapper and loss together, so DDP also averages prototype gradients."""

    def __init__(self, cls: type[Any], hypers: dict, kind: str, dim: int) -> None:
        super().__init__()
        self.mapper = nn.Sequential(nn.Linear(D_IN, 8), nn.Tanh(), nn.Linear(8, dim))
        self.softmax = "softmax=true" in _text(CASES[kind][0])
        extra = {"embedding_dim": dim} if "embedding_dim" in cls.__init__.__kwdefaults__ else {}
        self.loss = cls(**hypers, **extra)

    def forward(self, x: torch.Tensor, inputs: dict) -> torch.Tensor:
        z = self.mapper(x)
        if self.softmax:
            z = torch.softmax(z, dim=1)
        return self.loss(z, **inputs)


def _batch() -> tuple[torch.Tensor, dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D_IN, dtype=torch.float64, generator=g)
    # every input a spec may name; views / partners / classes straddle the two processes
    index = torch.arange(N // 2).repeat(2)[torch.randperm(N, generator=g)]
    y = torch.tensor([0, 1, 2, 3] * 4)[torch.randperm(N, generator=g)]
    modality = (torch.arange(N) >= N // 2).long()
    clip_index = torch.arange(N) % (N // 2)
    side = x[:, :3] ** 2
    inputs = {"x": x, "y": y, "index": index, "modality": modality, "clip_index": clip_index}
    return x, {**inputs, "side": side}


def _inputs(cls: type[Any], data: dict, rows: slice) -> dict:
    out = {}
    for name in cls.INPUTS:
        source = data["clip_index"] if name == "index" and "modality" in cls.INPUTS else data[name]
        out[name] = source[rows]
    return out


def _build(kind: str) -> tuple[nn.Module, type]:
    spec, hypers = CASES[kind]
    cls = icon_dsl.compile(spec, normaliser="exact" if kind in BLOCKS else "dense").load()
    softmax = "softmax=true" in _text(spec)
    dim = 10 if kind == "cross_entropy" or softmax else 4
    torch.manual_seed(1)
    return Model(cls, hypers, kind, dim).double(), cls


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        x, data = _batch()
        rows = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
        results = {}
        for kind in CASES:
            model, cls = _build(kind)
            ddp = nn.parallel.DistributedDataParallel(model)
            loss = ddp(x[rows], _inputs(cls, data, rows))
            loss.backward()
            mean_loss = loss.detach().clone()
            dist.all_reduce(mean_loss)
            grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
            results[kind] = (float(mean_loss) / WORLD, grads)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_results() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        mp.spawn(_worker, args=(init_file, tmp), nprocs=WORLD, join=True)
        return {r: torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(WORLD)}


@pytest.mark.parametrize("kind", list(CASES))
def test_two_processes_equal_one(kind: str, distributed_results: dict) -> None:
    x, data = _batch()
    model, cls = _build(kind)
    loss = model(x, _inputs(cls, data, slice(0, N)))
    loss.backward()
    for rank in range(WORLD):
        dist_loss, grads = distributed_results[rank][kind]
        assert abs(dist_loss - loss.item()) <= TOL, (kind, dist_loss, loss.item())
        for name, param in model.named_parameters():
            diff = (grads[name] - param.grad).abs().max().item()
            assert diff <= TOL, (kind, name, diff)
