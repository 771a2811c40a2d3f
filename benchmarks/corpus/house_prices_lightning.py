"""House prices with PyTorch Lightning: the model of house_prices.py as a LightningModule.

SGD with momentum from configure_optimizers, MSE on log prices, ``val_loss`` logged every epoch; the
metric is the validation RMSE of log prices.
"""

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

warnings.filterwarnings("ignore", ".*does not have many workers.*")
DATA = Path(__file__).resolve().parent / "data" / "house_prices.csv"


class PriceModel(pl.LightningModule):
    def __init__(self, n_in, lr, y_mean):
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(n_in, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))
        with torch.no_grad():
            self.net[-1].bias.fill_(y_mean)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y.unsqueeze(1))
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x), y.unsqueeze(1)), prog_bar=False)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    pl.seed_everything(args.seed, verbose=False)

    raw = np.genfromtxt(DATA, delimiter=",", skip_header=1, dtype=np.float64)
    order = np.random.default_rng(args.seed).permutation(len(raw))
    n_val = len(raw) // 5
    X_train, X_val = raw[order[n_val:], :-1], raw[order[:n_val], :-1]
    mean, std = X_train.mean(axis=0), X_train.std(axis=0) + 1e-8
    X_train = (X_train - mean) / std
    X_val = (X_val - mean) / std
    y_train = np.log1p(raw[order[n_val:], -1])
    y_val = np.log1p(raw[order[:n_val], -1])
    X_train, X_val = torch.tensor(X_train, dtype=torch.float32), torch.tensor(X_val, dtype=torch.float32)
    y_train, y_val = torch.tensor(y_train, dtype=torch.float32), torch.tensor(y_val, dtype=torch.float32)

    model = PriceModel(X_train.shape[1], lr=0.01, y_mean=float(y_train.mean()))
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(TensorDataset(X_train, y_train), batch_size=64, shuffle=True),
                DataLoader(TensorDataset(X_val, y_val), batch_size=512))

    model.eval()
    with torch.no_grad():
        rmse = torch.sqrt(torch.mean((model(X_val).squeeze(1) - y_val) ** 2)).item()
    print("FINAL " + json.dumps({"metric": "val_rmse_log_price", "value": rmse}))


if __name__ == "__main__":
    main()
