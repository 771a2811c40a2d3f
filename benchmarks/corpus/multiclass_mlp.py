"""Five-class classification of synthetic tabular data with an MLP (dropout), AdamW and OneCycleLR.

Written the "class" way: a Classifier module, a Trainer object, a DataLoader, sklearn for the data and
the scaler. Validation loss every epoch; the metric is the validation error rate.
"""

import argparse
import json

import torch
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Classifier(nn.Module):
    def __init__(self, n_features, n_classes, hidden=128, p_drop=0.1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Dropout(p_drop),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x):
        return self.head(self.body(x))


class Trainer:
    def __init__(self, model, train_loader, val_loader, epochs, lr):
        self.model = model
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.epochs = epochs
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=lr, total_steps=epochs * len(train_loader))

    def train_epoch(self):
        self.model.train()
        total, count = 0.0, 0
        for xb, yb in self.train_loader:
            logits = self.model(xb)
            loss = self.criterion(logits, yb)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            total += loss.item() * len(yb)
            count += len(yb)
        return total / count

    @torch.no_grad()
    def validate(self):
        self.model.eval()
        total, wrong, count = 0.0, 0, 0
        for xb, yb in self.val_loader:
            logits = self.model(xb)
            total += self.criterion(logits, yb).item() * len(yb)
            wrong += (logits.argmax(dim=1) != yb).sum().item()
            count += len(yb)
        return total / count, wrong / count

    def fit(self):
        for epoch in range(self.epochs):
            train_loss = self.train_epoch()
            val_loss, val_err = self.validate()
            print(f"[{epoch + 1}/{self.epochs}] loss={train_loss:.4f} val_loss={val_loss:.4f} val_err={val_err:.3f}")
        return val_err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    X, y = make_classification(n_samples=2400, n_features=20, n_informative=12, n_redundant=4,
                               n_classes=5, n_clusters_per_class=2, class_sep=1.5, random_state=args.seed)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=args.seed, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_val = scaler.transform(X_train), scaler.transform(X_val)

    train_ds = TensorDataset(torch.tensor(X_train, dtype=torch.float32), torch.tensor(y_train, dtype=torch.long))
    val_ds = TensorDataset(torch.tensor(X_val, dtype=torch.float32), torch.tensor(y_val, dtype=torch.long))
    train_loader = DataLoader(train_ds, batch_size=64, shuffle=True)
    val_loader = DataLoader(val_ds, batch_size=256)

    model = Classifier(X.shape[1], 5)
    err = Trainer(model, train_loader, val_loader, epochs=args.epochs, lr=3e-3).fit()
    print("FINAL " + json.dumps({"metric": "val_error", "value": err}))


if __name__ == "__main__":
    main()
