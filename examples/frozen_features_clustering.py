"""Recipe (d): a linear clustering head on frozen features (the I-Con paper's clustering setup).

    python examples/frozen_features_clustering.py [--samples 1797] [--backbone-epochs 30]
        [--head-epochs 30] [--restarts 10]

The paper trains a linear head with the debiased InfoNCE clustering loss on frozen DINO
features. Here the frozen backbone is one a user can make offline in a minute: a small CNN
trained without labels by specs/simclr.icon through `train(mapper=cnn, views=...)`. Its
features are then fixed, and specs/debiased_infonce_clustering.icon trains its own mapper,
`linear(dim=10, softmax=true)`, on them: a linear head. Labels are used only to score the
clusters (Hungarian accuracy and NMI), against scikit-learn's KMeans on the same features and on
the pixels.
"""

from __future__ import annotations

import argparse
import json

import torch
from _common import SPECS, digits
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score
from torch import nn

from icon_dsl.train.metrics import cluster_accuracy
from icon_dsl.train.runtime import train


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 32),
    )  # fmt: skip


def shifted_noisy_view(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One view of each flattened digit: moved by up to one pixel, plus noise."""
    images = batch.reshape(-1, 8, 8)
    padded = nn.functional.pad(images, (1, 1, 1, 1))
    offsets = torch.randint(0, 3, (len(batch), 2), generator=generator)
    rows = offsets[:, 0, None] + torch.arange(8)
    cols = offsets[:, 1, None] + torch.arange(8)
    moved = padded[torch.arange(len(batch))[:, None, None], rows[:, :, None], cols[:, None, :]]
    noise = 0.05 * torch.randn(moved.shape, generator=generator)
    return (moved + noise).reshape(len(batch), -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--backbone-epochs", type=int, default=30)
    parser.add_argument("--head-epochs", type=int, default=30)
    parser.add_argument("--restarts", type=int, default=10)
    args = parser.parse_args()

    x, y = digits(args.samples)
    torch.manual_seed(0)
    backbone = small_cnn()
    train(SPECS / "simclr.icon", data=x.numpy(), mapper=backbone, views=shifted_noisy_view,
          epochs=args.backbone_epochs, batch_size=256, out=False, progress=False)  # fmt: skip
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)  # frozen from here on
    with torch.no_grad():
        features = backbone.eval()(x).numpy()

    head = train(SPECS / "debiased_infonce_clustering.icon", data=(features, y.numpy()),
                 epochs=args.head_epochs, restarts=args.restarts, standardize=True,
                 out=False, progress=False)  # fmt: skip
    clusters = head.embedding.argmax(axis=1)
    labels = y.numpy()
    result = {
        "head_cluster_accuracy": cluster_accuracy(labels, clusters),
        "head_nmi": normalized_mutual_info_score(labels, clusters),
        "metrics_nmi": head.metrics["nmi"],
    }
    for name, data in (("features", features), ("pixels", x.numpy())):
        found = KMeans(10, n_init=10, random_state=0).fit_predict(data)
        result[f"kmeans_{name}_cluster_accuracy"] = cluster_accuracy(labels, found)
        result[f"kmeans_{name}_nmi"] = normalized_mutual_info_score(labels, found)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
