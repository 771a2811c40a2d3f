"""Medic-API version of unet1d_denoise.py (the README's `with Medic(...)`, `loss_fn=`, `batch=`).

A small 1D U-Net denoiser with skip connections on synthetic piecewise signals.

Each signal (length 128) is a sum of two random sinusoids plus a random step; the input is the signal
with Gaussian noise (std 0.3). The U-Net: two conv blocks going down (stride-2 pooling), a bottleneck,
two transposed-conv upsamplings each concatenated with the encoder's skip, GroupNorm; RAdam, a
DataLoader over a TensorDataset, L1 loss while training. Metric: validation MSE to the clean signal.
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainmedic

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=5)
p.add_argument("--mode", default="watch")
p.add_argument("--out", default=None)
args = p.parse_args()
torch.manual_seed(args.seed)

L = 128


def make(n, g):
    t = torch.linspace(0, 1, L)
    f = torch.rand(n, 2, 1, generator=g) * 6 + 1
    ph = torch.rand(n, 2, 1, generator=g) * 2 * math.pi
    amp = torch.rand(n, 2, 1, generator=g)
    clean = (amp * torch.sin(2 * math.pi * f * t + ph)).sum(1)
    where = torch.randint(20, L - 20, (n, 1), generator=g)
    height = torch.randn(n, 1, generator=g) * 0.8
    clean = clean + height * (torch.arange(L) >= where).float()
    noisy = clean + 0.3 * torch.randn(n, L, generator=g)
    return noisy.unsqueeze(1), clean.unsqueeze(1)


g = torch.Generator().manual_seed(100 + args.seed)
noisy_train, clean_train = make(1500, g)
noisy_val, clean_val = make(400, g)
loader = DataLoader(TensorDataset(noisy_train, clean_train), batch_size=32, shuffle=True)


def block(c_in, c_out):
    return nn.Sequential(nn.Conv1d(c_in, c_out, 5, padding=2), nn.GroupNorm(4, c_out), nn.SiLU(),
                         nn.Conv1d(c_out, c_out, 5, padding=2), nn.GroupNorm(4, c_out), nn.SiLU())


class UNet1d(nn.Module):
    def __init__(self, w=12):
        super().__init__()
        self.enc1, self.enc2 = block(1, w), block(w, 2 * w)
        self.mid = block(2 * w, 4 * w)
        self.up2, self.dec2 = nn.ConvTranspose1d(4 * w, 2 * w, 2, stride=2), block(4 * w, 2 * w)
        self.up1, self.dec1 = nn.ConvTranspose1d(2 * w, w, 2, stride=2), block(2 * w, w)
        self.head = nn.Conv1d(w, 1, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool1d(e1, 2))
        m = self.mid(F.max_pool1d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return x + self.head(d1)


model = UNet1d()
optimizer = torch.optim.RAdam(model.parameters(), lr=2e-3)

medic = trainmedic.Medic(model, optimizer, mode=args.mode, loss_fn=F.l1_loss)
with medic:
    for epoch in range(args.epochs):
        model.train()
        for xb, yb in loader:
            loss = F.l1_loss(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss, batch=(xb, yb))
        model.eval()
        with torch.no_grad():
            val_mse = F.mse_loss(model(noisy_val), clean_val).item()
        medic.end_epoch(val_loss=val_mse)
        if medic.should_stop:
            break
        print(f"epoch {epoch} train l1 {loss.item():.4f} val mse {val_mse:.5f}")

if args.out:
    medic.save_report(args.out)
print("FINAL " + json.dumps({"metric": "val_mse", "value": val_mse}))
