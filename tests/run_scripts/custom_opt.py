"""A hand-written optimizer (not torch.optim) that a NaN batch would poison; heal must skip that step."""

import sys

import torch


class PlainSGD:
    def __init__(self, params, lr):
        self.params = list(params)
        self.lr = lr
        self.param_groups = [{"params": self.params, "lr": lr}]
        self.state = {}

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        with torch.no_grad():
            for p in self.params:
                p -= self.lr * p.grad  # no None check: a skipped step must not crash this


torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
base = torch.optim.SGD(model.parameters(), lr=0.05)  # a real torch.optim.Optimizer subclass follows
Optim = type("Optim", (torch.optim.Optimizer,), {"step": lambda self, closure=None: PlainSGD.step(self),
                                                 "zero_grad": PlainSGD.zero_grad})
opt = Optim(model.parameters(), {"lr": 0.05})
opt.params, opt.lr = list(model.parameters()), 0.05
for step in range(40):
    x = torch.randn(16, 4)
    if step == 30:
        x[0, 0] = float("nan")
    loss = (model(x).squeeze(1) - x.sum(1)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
finite = all(torch.isfinite(p).all() for p in model.parameters())
print(f"finite={finite}")
sys.exit(0 if finite or "--expect-nan" in sys.argv else 5)
