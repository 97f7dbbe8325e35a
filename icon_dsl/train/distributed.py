"""Data-parallel training over processes: `icon-dsl train --nproc N`.

Takes: the training command's arguments. Guarantees: `launch` re-runs the same command under
torchrun with N processes; inside each process, `init_from_env` joins the process group (gloo on
CPU, nccl on CUDA) and `shard` gives this process its equal, contiguous share of every batch.
Every process builds the same global batch from the same seed; the generated loss gathers the
columns across processes and DistributedDataParallel averages the gradients, so a run with N
processes follows the one-process run (tests/test_train_distributed.py checks the losses).
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch
import torch.distributed as dist
from torch import nn

from icon_dsl.train.batches import Batch


def init_from_env(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when torchrun started this process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(batch: Batch, rank: int, world: int) -> Batch:
    """This process's rows of a batch: equal contiguous slices (the tail that does not divide
    evenly is left out, since the generated loss needs equal rows per process)."""
    n = len(batch.mapper_input) // world
    rows = slice(rank * n, (rank + 1) * n)
    return Batch(batch.mapper_input[rows], {k: v[rows] for k, v in batch.inputs.items()})


class MapperAndLoss(nn.Module):
    """The mapper and the loss as one module, so DDP also averages prototype gradients."""

    def __init__(self, mapper: nn.Module, loss: nn.Module) -> None:
        super().__init__()
        self.mapper, self.loss = mapper, loss

    def forward(self, mapper_input: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss(self.mapper(mapper_input), **inputs)  # type: ignore[no-any-return]


def mean_over_processes(value: torch.Tensor, world: int) -> float:
    """The loss averaged over processes: the global loss the one-process run reports."""
    if world == 1:
        return float(value)
    total = value.detach().clone()
    dist.all_reduce(total)
    return float(total) / world


def launch(argv: list[str], nproc: int) -> int:
    """Run `icon-dsl <argv>` under torchrun with `nproc` processes; its exit status."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "icon_dsl.cli",
        *argv,
    ]
    return subprocess.run(command, check=False).returncode
