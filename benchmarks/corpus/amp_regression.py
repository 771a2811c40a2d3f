"""Mixed precision on CPU: float16 autocast with a GradScaler, on the Friedman #1 regression problem.

An MLP with LayerNorm, Adam, a DataLoader, the target standardized; validation every second epoch; the
metric is the validation RMSE in the target's own units.
"""

import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import make_friedman1
from torch.utils.data import DataLoader, TensorDataset


def build_data(seed):
    X, y = make_friedman1(n_samples=3000, n_features=10, noise=0.5, random_state=seed)
    X = torch.tensor(X, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.float32)
    X_train, X_val, y_train, y_val = X[:2400], X[2400:], y[:2400], y[2400:]
    mu, sd = X_train.mean(0), X_train.std(0)
    X_train, X_val = (X_train - mu) / sd, (X_val - mu) / sd
    t_mu, t_sd = y_train.mean(), y_train.std()
    return X_train, (y_train - t_mu) / t_sd, X_val, y_val, (t_mu, t_sd)


class Regressor(nn.Module):
    def __init__(self, d_in, width=128):
        super().__init__()
        self.fc1 = nn.Linear(d_in, width)
        self.norm = nn.LayerNorm(width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = nn.Linear(width, 1)

    def forward(self, x):
        x = F.gelu(self.norm(self.fc1(x)))
        x = F.gelu(self.fc2(x))
        return self.fc3(x).squeeze(-1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    X_train, y_train, X_val, y_val, (t_mu, t_sd) = build_data(args.seed)
    loader = DataLoader(TensorDataset(X_train, y_train), batch_size=64, shuffle=True)
    model = Regressor(X_train.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    scaler = torch.amp.GradScaler("cpu")

    for epoch in range(args.epochs):
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            with torch.autocast(device_type="cpu", dtype=torch.float16):
                pred = model(xb)
            loss = F.mse_loss(pred.float(), yb)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        if epoch % 2 == 1:
            model.eval()
            with torch.no_grad():
                val_pred = model(X_val) * t_sd + t_mu
                val_loss = F.mse_loss(val_pred, y_val).item()
            print(f"epoch {epoch}: train mse {loss.item():.4f}  val mse {val_loss:.4f}")

    with torch.no_grad():
        rmse = torch.sqrt(F.mse_loss(model(X_val) * t_sd + t_mu, y_val)).item()
    print("FINAL " + json.dumps({"metric": "val_rmse", "value": rmse}))


if __name__ == "__main__":
    main()
