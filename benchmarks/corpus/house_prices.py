"""House prices: an MLP on 14 numeric columns of the Kaggle data, trained on log(price).

Plain tensors, a hand-rolled shuffle, SGD with momentum, validation every epoch; the metric is the
validation RMSE of log prices (the Kaggle metric).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

DATA = Path(__file__).resolve().parent / "data" / "house_prices.csv"


def load(seed):
    raw = np.genfromtxt(DATA, delimiter=",", skip_header=1, dtype=np.float64)
    features, price = raw[:, :-1], raw[:, -1]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(raw))
    n_val = len(raw) // 5
    val_idx, train_idx = order[:n_val], order[n_val:]
    X_train, X_val = features[train_idx], features[val_idx]
    mean, std = X_train.mean(axis=0), X_train.std(axis=0) + 1e-8
    X_train = (X_train - mean) / std
    X_val = (X_val - mean) / std
    y_train = np.log1p(price[train_idx])
    y_val = np.log1p(price[val_idx])
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return as_t(X_train), as_t(y_train), as_t(X_val), as_t(y_val), as_t(price[val_idx])


def make_model(n_in):
    return nn.Sequential(
        nn.Linear(n_in, 64), nn.ReLU(),
        nn.Linear(64, 32), nn.ReLU(),
        nn.Linear(32, 1),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    X_train, y_train, X_val, y_val, price_val = load(args.seed)
    y_mean = y_train.mean()
    model = make_model(X_train.shape[1])
    with torch.no_grad():
        model[-1].bias.fill_(float(y_mean))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    criterion = nn.MSELoss()
    batch_size = 64

    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(X_train))
        running = 0.0
        for i in range(0, len(X_train), batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = X_train[idx], y_train[idx].unsqueeze(1)
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            running += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            val_loss = criterion(model(X_val), y_val.unsqueeze(1)).item()
        print(f"epoch {epoch:2d}  train {running / len(X_train):.4f}  val {val_loss:.4f}")

    with torch.no_grad():
        price_pred = torch.expm1(model(X_val).squeeze(1))
        log_err = torch.log1p(price_pred.clamp(min=0)) - torch.log1p(price_val)
        rmse = torch.sqrt(torch.mean(log_err ** 2)).item()
    print("FINAL " + json.dumps({"metric": "val_rmse_log_price", "value": rmse}))


if __name__ == "__main__":
    main()
