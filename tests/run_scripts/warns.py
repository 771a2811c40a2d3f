"""A regression loop whose loss broadcasts (B,1) against (B,): PyTorch's UserWarning names this file's line."""

import torch
import torch.nn.functional as F

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(64, 4), torch.randn(64)
crit = torch.nn.MSELoss()
for _step in range(6):
    opt.zero_grad()
    loss = F.mse_loss(model(x), y)  # the broadcast: (64, 1) against (64,)
    loss = loss + 0 * crit(model(x), y)
    loss.backward()
    opt.step()
print("done")
