"""GradScaler keeps finding inf gradients: it skips every step and its scale collapses (TM314)."""

import torch

torch.manual_seed(0)
model = torch.nn.Linear(8, 1)
model.weight.register_hook(lambda g: g + float("inf"))  # every gradient overflows
opt = torch.optim.SGD(model.parameters(), lr=0.1)
scaler = torch.amp.GradScaler("cpu")
for _ in range(30):
    loss = model(torch.randn(16, 8)).pow(2).mean()
    opt.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
print(f"scale {scaler.get_scale():g}")
