"""A variational autoencoder on sklearn's 8x8 digits: Gaussian encoder, Bernoulli decoder, loss =
reconstruction (BCE with logits, summed over pixels) + KL to N(0, I), averaged over the batch.

Adam, DataLoader over a TensorDataset with a single tensor, the reparameterization trick, a
validation ELBO each epoch. Metric: validation negative ELBO per image.
"""
import argparse
import json

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=15)
args = p.parse_args()
torch.manual_seed(args.seed)

data = torch.tensor(load_digits().data, dtype=torch.float32) / 16.0
perm = torch.randperm(len(data))
train_data, val_data = data[perm[:1500]], data[perm[1500:]]


class VAE(nn.Module):
    def __init__(self, d=64, h=128, z=8):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d, h), nn.ReLU())
        self.mu = nn.Linear(h, z)
        self.logvar = nn.Linear(h, z)
        self.dec = nn.Sequential(nn.Linear(z, h), nn.ReLU(), nn.Linear(h, d))

    def forward(self, x):
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.dec(z), mu, logvar


def vae_loss(recon_logits, x, mu, logvar):
    rec = F.binary_cross_entropy_with_logits(recon_logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (rec + kl) / x.size(0)


vae = VAE()
opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
loader = DataLoader(TensorDataset(train_data), batch_size=64, shuffle=True)

for epoch in range(args.epochs):
    vae.train()
    for (x,) in loader:
        recon, mu, logvar = vae(x)
        loss = vae_loss(recon, x, mu, logvar)
        opt.zero_grad()
        loss.backward()
        opt.step()
    vae.eval()
    with torch.no_grad():
        recon, mu, logvar = vae(val_data)
        val = vae_loss(recon, val_data, mu, logvar).item()
    print(f"epoch {epoch} train {loss.item():.2f} val {val:.2f}")

print("FINAL " + json.dumps({"metric": "val_neg_elbo", "value": val}))
