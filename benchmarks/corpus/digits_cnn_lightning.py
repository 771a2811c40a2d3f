"""The CNN of digits_cnn.py on the 8x8 digits, as a LightningModule.

SGD with Nesterov momentum and a cosine schedule returned from configure_optimizers, cross-entropy,
``val_loss`` logged every epoch; the metric is the validation error rate.
"""

import argparse
import json
import warnings

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

warnings.filterwarnings("ignore", ".*does not have many workers.*")


class DigitsCNN(pl.LightningModule):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.flatten(1))

    def training_step(self, batch, batch_idx):
        images, targets = batch
        return F.cross_entropy(self(images), targets)

    def validation_step(self, batch, batch_idx):
        images, targets = batch
        self.log("val_loss", F.cross_entropy(self(images), targets))

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        return [opt], [sched]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=8)
    args = p.parse_args()
    pl.seed_everything(args.seed, verbose=False)
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    idx = np.random.default_rng(args.seed).permutation(len(images))
    cut = int(0.8 * len(idx))
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(digits.target.astype(np.int64))
    X_train, y_train, X_val, y_val = x[idx[:cut]], y[idx[:cut]], x[idx[cut:]], y[idx[cut:]]

    model = DigitsCNN(args.epochs)
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(TensorDataset(X_train, y_train), batch_size=32, shuffle=True),
                DataLoader(TensorDataset(X_val, y_val), batch_size=512))
    model.eval()
    with torch.no_grad():
        err = (model(X_val).argmax(1) != y_val).float().mean().item()
    print("FINAL " + json.dumps({"metric": "val_error", "value": err}))


if __name__ == "__main__":
    main()
