"""Recipe (a): the generated SupCon loss in a plain torch training loop.

    python examples/plain_torch_loop.py [--epochs 20] [--samples 1797]

`icon_dsl.compile(spec).load()` gives the generated loss class (`icon-dsl compile
specs/supcon.icon -o generated` writes the same class to a standalone file that imports only
torch). The loss takes the mapper's output z and, by keyword, the inputs its p and q read
(`SupCon.INPUTS == ("y",)`); `build_mapper` gives the spec's own mapper, or use any module.
"""

from __future__ import annotations

import argparse
import json

import torch
from _common import SPECS, digits, knn_accuracy
from torch.utils.data import DataLoader, TensorDataset

import icon_dsl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    loss_class = icon_dsl.compile(SPECS / "supcon.icon").load()
    loss_fn = loss_class(temperature=0.1)
    x, y = digits(args.samples)
    mapper = loss_class.build_mapper(x.shape[1])  # mlp(dim=64, hidden=256, depth=2)
    optimizer = torch.optim.Adam(mapper.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True, drop_last=True)

    losses = []
    for _ in range(args.epochs):
        total = 0.0
        for batch_x, batch_y in loader:
            optimizer.zero_grad()
            loss = loss_fn(mapper(batch_x), y=batch_y)  # the inputs of p and q by name
            loss.backward()
            optimizer.step()
            total += loss.item()
        losses.append(total / len(loader))

    with torch.no_grad():
        embedding = mapper(x).numpy()
    result = {"first_loss": losses[0], "last_loss": losses[-1],
              "knn_accuracy": knn_accuracy(embedding, y.numpy())}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
