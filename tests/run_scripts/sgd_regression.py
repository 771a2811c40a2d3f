"""Plain SGD on the heal benchmark's regression (an MLP on y = f(x) + noise, MSE, 64 steps an epoch), validated
after each epoch (the probe replay under `run`).

--lr: the rate (0.1 is tuned, 1.0 is 10x too high and diverges within the first epoch); --seed: the model's
seed and the batch order's; --loss: functional (F.mse_loss) or hand ((out - y).pow(2).mean(): no functional
loss call, so no loss can be rebuilt); --clip: clip_grad_norm_ at 1.0. An ordinary script, nothing of
trainmedic. Prints each epoch's validation loss in full precision and the optimizer's rate, then a digest of
the final weights and of the RNG state (what a run that changed nothing must reproduce).
"""

import argparse
import hashlib

import torch
from torch import nn
from torch.nn import functional as F

from trainmedic.zoo._common import mlp, regression_data

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--seed", type=int, default=2)
p.add_argument("--epochs", type=int, default=10)
p.add_argument("--loss", choices=["functional", "hand"], default="functional")
p.add_argument("--clip", action="store_true")
args = p.parse_args()

x, y = regression_data(n=2048, d=16, seed=0, noise=0.3)
xv, yv = regression_data(n=1024, d=16, seed=0, noise=0.3, split="val")
torch.manual_seed(args.seed)
model = mlp(16, 1, hidden=64)
opt = torch.optim.SGD(model.parameters(), lr=args.lr)
for epoch in range(args.epochs):
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
    for i in range(0, len(x) - 31, 32):
        xb, yb = x[order[i:i + 32]], y[order[i:i + 32]]
        out = model(xb)
        loss = F.mse_loss(out, yb) if args.loss == "functional" else (out - yb).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        if args.clip:
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    with torch.no_grad():
        val = float(F.mse_loss(model(xv), yv))
    print(f"epoch {epoch} val {val!r} lr {opt.param_groups[0]['lr']!r}", flush=True)
digest = hashlib.sha256()
for t in model.state_dict().values():
    digest.update(t.detach().numpy().tobytes())
print("weights", digest.hexdigest())
print("rng", hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest())
