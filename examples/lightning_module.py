"""Recipe (b): the generated SimCLR loss inside a LightningModule.

    python examples/lightning_module.py [--epochs 30] [--samples 1797]

The LightningModule owns the mapper and the generated loss; `training_step` makes two views of
the batch (with icon-dsl's `make_views`; any augmentation will do) and calls the loss with
`index` (views of one sample share it), as the spec's `p = augmentation(index)` asks. Lightning runs the loop, the optimiser and the logging.
"""

from __future__ import annotations

import argparse
import json

import lightning as L
import torch
from _common import SPECS, digits, knn_accuracy
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import icon_dsl
from icon_dsl.train.augment import make_views


class Contrastive(L.LightningModule):
    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        loss_class = icon_dsl.compile(SPECS / "simclr.icon").load()
        self.loss_fn = loss_class(temperature=temperature)
        self.mapper: nn.Module = loss_class.build_mapper(64)
        self.generator = torch.Generator().manual_seed(0)

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (x,) = batch
        # two augmented views of every digit (rotation, zoom, shift, noise, pixel dropout);
        # `index` says which sample each view came from
        views, index = make_views(x, 2, self.generator, image_shape=(8, 8))
        loss = self.loss_fn(self.mapper(views), index=index)
        self.log("loss", loss, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class LossHistory(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.losses.append(float(trainer.callback_metrics["loss"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=None)
    args = parser.parse_args()

    L.seed_everything(0, verbose=False)
    x, y = digits(args.samples)
    loader = DataLoader(TensorDataset(x), batch_size=128, shuffle=True, drop_last=True)
    module, history = Contrastive(), LossHistory()
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[history])  # fmt: skip
    trainer.fit(module, loader)

    with torch.no_grad():
        embedding = module.mapper(x).numpy()
    result = {"first_loss": history.losses[0], "last_loss": history.losses[-1],
              "knn_accuracy": knn_accuracy(embedding, y.numpy())}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
