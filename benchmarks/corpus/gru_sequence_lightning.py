"""The GRU frequency regression of gru_sequence.py as a LightningModule.

Fixed training and validation sets of noisy sine waves, Adam with StepLR, Lightning's own gradient
clipping (``gradient_clip_val``), ``val_loss`` logged every epoch; the metric is the validation RMSE.
"""

import argparse
import json
import math
import warnings

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

warnings.filterwarnings("ignore", ".*does not have many workers.*")
SEQ = 24


def make_waves(n, gen):
    freq = torch.rand(n, generator=gen) * 0.8 + 0.2
    phase = torch.rand(n, generator=gen) * 2 * math.pi
    t = torch.arange(SEQ, dtype=torch.float32)
    wave = torch.sin(2 * math.pi * freq[:, None] * t[None, :] * 0.25 + phase[:, None])
    x = (wave + 0.1 * torch.randn(n, SEQ, generator=gen)).unsqueeze(-1)
    return x, (freq - 0.6) / 0.23


class FreqRegressor(pl.LightningModule):
    def __init__(self, hidden=32, lr=1e-2):
        super().__init__()
        self.lr = lr
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        _, h = self.gru(x)
        return self.head(h[-1]).squeeze(-1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    pl.seed_everything(args.seed, verbose=False)
    X_train, y_train = make_waves(3200, torch.Generator().manual_seed(args.seed))
    X_val, y_val = make_waves(512, torch.Generator().manual_seed(10_000 + args.seed))
    model = FreqRegressor()
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, logger=False, gradient_clip_val=0.5,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(TensorDataset(X_train, y_train), batch_size=64, shuffle=True),
                DataLoader(TensorDataset(X_val, y_val), batch_size=512))
    model.eval()
    with torch.no_grad():
        rmse = math.sqrt(F.mse_loss(model(X_val), y_val).item())
    print("FINAL " + json.dumps({"metric": "val_rmse", "value": rmse}))


if __name__ == "__main__":
    main()
