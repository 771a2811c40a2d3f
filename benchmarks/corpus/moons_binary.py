"""Binary classification of two interleaved moons, written as one plain script with no classes.

nn.Sequential, BCE-with-logits on float labels of shape (B, 1), plain SGD with momentum on random
minibatches for a fixed number of steps, a print every 200 steps and no validation during training;
the metric is the error rate on a held-out set.
"""

import argparse
import json

import torch
from sklearn.datasets import make_moons

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--steps", type=int, default=1200)
args = parser.parse_args()

torch.manual_seed(args.seed)
X, y = make_moons(n_samples=3000, noise=0.25, random_state=args.seed)
X = torch.tensor(X, dtype=torch.float32)
y = torch.tensor(y, dtype=torch.float32).view(-1, 1)
X_train, y_train, X_test, y_test = X[:2000], y[:2000], X[2000:], y[2000:]

model = torch.nn.Sequential(
    torch.nn.Linear(2, 32),
    torch.nn.ReLU(),
    torch.nn.Linear(32, 32),
    torch.nn.ReLU(),
    torch.nn.Linear(32, 32),
    torch.nn.ReLU(),
    torch.nn.Linear(32, 1),
)
loss_fn = torch.nn.BCEWithLogitsLoss()
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

for it in range(args.steps):
    idx = torch.randint(0, len(X_train), (64,))
    logits = model(X_train[idx])
    loss = loss_fn(logits, y_train[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    if it % 200 == 0:
        print(f"iter {it}: loss {loss.item():.4f}")

with torch.no_grad():
    err = ((model(X_test) > 0).float() != y_test).float().mean().item()
print(f"test error {err:.4f}")
print("FINAL " + json.dumps({"metric": "test_error", "value": err}))
