"""Two models, two optimizers (a GAN-like loop); the second one's loss turns NaN at step 20."""

import torch

torch.manual_seed(0)
gen = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
disc = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3)
opt_d = torch.optim.SGD(disc.parameters(), lr=1e-2)
for step in range(40):
    real = torch.randn(32, 4) + 2
    fake = gen(torch.randn(32, 4))
    d_loss = torch.nn.functional.softplus(-disc(real)).mean() + torch.nn.functional.softplus(disc(fake.detach())).mean()
    if step == 20:
        d_loss = d_loss * float("nan")
    opt_d.zero_grad()
    torch.autograd.backward(d_loss)
    opt_d.step()
    g_loss = torch.nn.functional.softplus(-disc(fake)).mean()
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
print("done")
