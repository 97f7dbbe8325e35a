"""Recipe (c): the generated SupCon loss under torchrun with DistributedDataParallel.

    torchrun --nproc_per_node=2 examples/ddp_torchrun.py [--epochs 20] [--samples 1797]

Each process embeds its share of every batch; the generated loss gathers the embeddings of all
processes (its `gather=True` default), so q of every anchor runs over the whole global batch as
in one process, and scales its mean so that DDP's gradient average is the gradient of the
global loss. gloo on CPU; with GPUs use `backend="nccl"` and move the modules to the device.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.distributed as dist
from _common import SPECS, digits, knn_accuracy
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import icon_dsl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=None)
    args = parser.parse_args()

    dist.init_process_group("gloo")  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, ...
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same initial weights in every process
    loss_class = icon_dsl.compile(SPECS / "supcon.icon").load()
    loss_fn = loss_class(temperature=0.1)
    x, y = digits(args.samples)
    mapper = DistributedDataParallel(loss_class.build_mapper(x.shape[1]))
    optimizer = torch.optim.Adam(mapper.parameters(), lr=1e-3)
    sampler = DistributedSampler(TensorDataset(x, y), shuffle=True, seed=0, drop_last=True)
    # 64 per process: a global batch of 64 x world (equal shares, as the gathered loss needs)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, sampler=sampler, drop_last=True)

    losses = []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        total = torch.zeros(())
        for batch_x, batch_y in loader:
            optimizer.zero_grad()
            loss = loss_fn(mapper(batch_x), y=batch_y)
            loss.backward()  # DDP averages the gradients over the processes
            optimizer.step()
            total += loss.detach()
        dist.all_reduce(total)  # the global loss: the mean over processes of the local ones
        losses.append(float(total) / world / len(loader))

    checksum = torch.stack([p.detach().double().sum() for p in mapper.parameters()]).sum()
    sums = [torch.zeros_like(checksum) for _ in range(world)]
    dist.all_gather(sums, checksum)  # DDP keeps the processes' weights identical
    if rank == 0:
        with torch.no_grad():
            embedding = mapper.module(x).numpy()
        result = {"world": world, "first_loss": losses[0], "last_loss": losses[-1],
                  "weights_equal": len({float(s) for s in sums}) == 1,
                  "knn_accuracy": knn_accuracy(embedding, y.numpy())}  # fmt: skip
        print(json.dumps(result))
    # every process leaves together: a process that tore gloo down while rank 0 was still
    # scoring aborted ("terminate called without an active exception") on a loaded machine
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
