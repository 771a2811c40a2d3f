"""An ordinary training script with one wiring or data fault (see wiring_cases.py).

    python wiring.py CASE [--healthy]
"""

import argparse

import torch
from wiring_cases import build

p = argparse.ArgumentParser()
p.add_argument("case")
p.add_argument("--healthy", action="store_true")
args = p.parse_args()

net, loss_fn, x, y, params = build(args.case, fault=not args.healthy)
opt = torch.optim.Adam(params, lr=1e-3)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
for _epoch in range(2):
    for xb, yb in loader:
        loss = loss_fn(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
print("done", args.case)
