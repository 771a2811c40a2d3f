"""A GAN on the classic 2-D ring of eight Gaussians: two MLPs, two Adam optimizers, BCE-with-logits.

Step-based, one discriminator step then one generator step, no validation set; the metric is the sliced
Wasserstein distance between 2,000 generated and 2,000 real points (lower is better).
"""

import argparse
import json
import math

import torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--steps", type=int, default=1500)
args = p.parse_args()
torch.manual_seed(args.seed)

NOISE = 8


def sample_real(n, gen=None):
    k = torch.randint(0, 8, (n,), generator=gen)
    angle = k.float() * (2 * math.pi / 8)
    centers = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1) * 2.0
    return centers + 0.05 * torch.randn(n, 2, generator=gen)


G = nn.Sequential(nn.Linear(NOISE, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
D = nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(0.2), nn.Linear(64, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))
opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()
batch = 128
ones = torch.ones(batch, 1)
zeros = torch.zeros(batch, 1)

for step in range(args.steps):
    # discriminator
    real = sample_real(batch)
    fake = G(torch.randn(batch, NOISE)).detach()
    d_loss = bce(D(real), ones) + bce(D(fake), zeros)
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    # generator
    fake = G(torch.randn(batch, NOISE))
    g_loss = bce(D(fake), ones)
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    if step % 250 == 0:
        print(f"step {step:5d}  d_loss {d_loss.item():.3f}  g_loss {g_loss.item():.3f}")


@torch.no_grad()
def sliced_wasserstein(a, b, n_proj=64):
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(2, n_proj, generator=g)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a @ dirs, dim=0)
    pb, _ = torch.sort(b @ dirs, dim=0)
    return (pa - pb).abs().mean().item()


with torch.no_grad():
    g = torch.Generator().manual_seed(99)
    generated = G(torch.randn(2000, NOISE, generator=g))
    reference = sample_real(2000, g)
print("FINAL " + json.dumps({"metric": "sliced_wasserstein", "value": sliced_wasserstein(generated, reference)}))
