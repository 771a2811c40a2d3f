"""Classify synthetic 1-D signals (sine, square, sawtooth) with a small 1-D CNN.

Conv1d + MaxPool + global average pooling, CrossEntropyLoss with label_smoothing=0.1, SGD with
momentum and StepLR per epoch, batches drawn by indexing a permutation of plain tensors.
Metric: validation error rate.
"""
import argparse
import json
import math

import torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=12)
args = p.parse_args()
g = torch.Generator().manual_seed(args.seed)
torch.manual_seed(args.seed)

T = 64


def make(n):
    labels = torch.randint(0, 3, (n,), generator=g)
    freq = 1 + 3 * torch.rand(n, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g)
    t = torch.linspace(0, 1, T).unsqueeze(0)
    arg = 2 * math.pi * freq * t + phase
    sine = torch.sin(arg)
    square = torch.sign(sine)
    saw = 2 * ((arg / (2 * math.pi)) % 1.0) - 1
    x = torch.where(labels[:, None] == 0, sine, torch.where(labels[:, None] == 1, square, saw))
    x = x + 0.3 * torch.randn(n, T, generator=g)
    return x.unsqueeze(1), labels


x_train, y_train = make(1200)
x_val, y_val = make(400)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(32, 32, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        return self.head(self.features(x).mean(-1))


net = Net()
loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
bs = 50
for epoch in range(args.epochs):
    net.train()
    perm = torch.randperm(len(x_train), generator=g)
    for i in range(0, len(perm), bs):
        idx = perm[i:i + bs]
        out = net(x_train[idx])
        loss = loss_fn(out, y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    sched.step()
    net.eval()
    with torch.no_grad():
        logits = net(x_val)
        vloss = loss_fn(logits, y_val).item()
        err = (logits.argmax(1) != y_val).float().mean().item()
    print(f"epoch {epoch} loss {loss.item():.3f} val {vloss:.3f} err {err:.3f}")

print("FINAL " + json.dumps({"metric": "val_error", "value": err}))
