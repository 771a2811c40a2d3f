"""Linear regression with LBFGS and a closure. Prints the loss each `opt.step(closure)` returns (the
closure's first loss of that step). `--nan-at N` puts a NaN into the batch of step N."""

import argparse

import torch

p = argparse.ArgumentParser()
p.add_argument("--nan-at", type=int, default=-1)
args = p.parse_args()
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
x = torch.randn(64, 4)
y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.3
opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)
for step in range(8):
    xb = x.clone()
    if step == args.nan_at:
        xb[0, 0] = float("nan")

    def closure(xb=xb):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(xb), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    print(f"step {step} loss {loss.item():.6f}")
print("finite", all(bool(torch.isfinite(q).all()) for q in model.parameters()))
