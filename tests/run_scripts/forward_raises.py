"""A mixture density network whose forward builds ``torch.distributions``: a NaN feature in row 130 makes
``Categorical(logits=...)`` raise inside the model's forward, before any loss exists (its argument
validation). ``--healthy``: clean rows, no crash."""

import sys

import torch
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily, Normal


class MDN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 32), nn.Tanh())
        self.head = nn.Linear(32, 9)

    def forward(self, x):
        logits, mu, log_sigma = self.head(self.body(x)).chunk(3, dim=-1)
        return MixtureSameFamily(Categorical(logits=logits), Normal(mu, log_sigma.exp()))


torch.manual_seed(0)
x = torch.randn(400, 4)
y = x[:, 0] * x[:, 1] + 0.1 * torch.randn(400)
if "--healthy" not in sys.argv:
    x[130, 2] = float("nan")
model = MDN()
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
for _ in range(2):
    for i in range(0, 400, 40):
        loss = -model(x[i:i + 40]).log_prob(y[i:i + 40]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
print("done")
