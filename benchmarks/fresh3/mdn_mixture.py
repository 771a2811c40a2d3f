"""Mixture density network on the inverse-sine problem (a one-to-many mapping), with torch.distributions.

y ~ U(-10, 10), x = y + 7 sin(0.75 y) + noise; predict the density of y given x. The network outputs
mixture logits, means and scales of 5 Gaussians, assembled as a `MixtureSameFamily(Categorical, Normal)`;
the loss is `-dist.log_prob(y).mean()`. Adamax, minibatches from a shuffled index, 40 epochs.
Metric: validation negative log-likelihood (nats).
"""
import argparse
import json

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily, Normal

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=40)
args = p.parse_args()
torch.manual_seed(args.seed)

K = 5


def make(n, g):
    y = torch.rand(n, generator=g) * 20 - 10
    x = y + 7 * torch.sin(0.75 * y) + torch.randn(n, generator=g)
    return x.unsqueeze(1) / 10, y


g = torch.Generator().manual_seed(7 + args.seed)
x_train, y_train = make(3000, g)
x_val, y_val = make(1000, g)


class MDN(nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.pi, self.mu, self.sigma = nn.Linear(hidden, K), nn.Linear(hidden, K), nn.Linear(hidden, K)

    def forward(self, x):
        h = self.body(x)
        mix = Categorical(logits=self.pi(h))
        comp = Normal(10 * self.mu(h), F.softplus(self.sigma(h)) + 1e-3)
        return MixtureSameFamily(mix, comp)


model = MDN()
optimizer = torch.optim.Adamax(model.parameters(), lr=2e-3)

n = len(x_train)
for epoch in range(args.epochs):
    model.train()
    order = torch.randperm(n)
    for i in range(0, n, 64):
        idx = order[i:i + 64]
        loss = -model(x_train[idx]).log_prob(y_train[idx]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        val_nll = -model(x_val).log_prob(y_val).mean().item()
    if epoch % 5 == 0 or epoch == args.epochs - 1:
        print(f"epoch {epoch} loss {loss.item():.4f} val nll {val_nll:.4f}")

print("FINAL " + json.dumps({"metric": "val_nll", "value": val_nll}))
