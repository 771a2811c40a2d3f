"""A GRU reads a noisy sine wave and regresses its frequency.

Plain tensors generated on the fly, Adam, the script clips its own gradients with clip_grad_norm_, a
StepLR schedule, validation every 100 steps; the metric is the validation RMSE of the (standardized)
frequency.
"""

import argparse
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

SEQ = 24


def make_batch(n, gen=None):
    freq = torch.rand(n, generator=gen) * 0.8 + 0.2
    phase = torch.rand(n, generator=gen) * 2 * math.pi
    t = torch.arange(SEQ, dtype=torch.float32)
    wave = torch.sin(2 * math.pi * freq[:, None] * t[None, :] * 0.25 + phase[:, None])
    x = (wave + 0.1 * torch.randn(n, SEQ, generator=gen)).unsqueeze(-1)
    y = (freq - 0.6) / 0.23
    return x, y


class FreqNet(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        _, h = self.gru(x)
        return self.head(h[-1]).squeeze(-1)


def validate(net, x_val, y_val):
    net.eval()
    with torch.no_grad():
        loss = F.mse_loss(net(x_val), y_val).item()
    net.train()
    return loss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    x_val, y_val = make_batch(512, torch.Generator().manual_seed(10_000 + args.seed))

    net = FreqNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=200, gamma=0.5)
    for step in range(1, args.steps + 1):
        x, y = make_batch(64)
        pred = net(x)
        loss = F.mse_loss(pred, y)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), max_norm=0.5)
        optimizer.step()
        scheduler.step()
        if step % 100 == 0:
            val_mse = validate(net, x_val, y_val)
            print(f"step {step}: train {loss.item():.4f} val {val_mse:.4f}")

    print("FINAL " + json.dumps({"metric": "val_rmse", "value": math.sqrt(validate(net, x_val, y_val))}))


if __name__ == "__main__":
    main()
