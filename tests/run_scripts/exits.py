import sys

import torch

model = torch.nn.Linear(2, 1)
opt = torch.optim.Adam(model.parameters())
model(torch.ones(3, 2)).sum().backward()
opt.step()
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
