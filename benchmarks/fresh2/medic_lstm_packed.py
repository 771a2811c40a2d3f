"""Medic-API version of lstm_packed.py (the README's `with Medic(...)`, `loss_fn=`, `batch=`).

An LSTM regressor over variable-length sequences, packed with pack_padded_sequence.

Each synthetic sequence (length 5-30, two channels) maps to a target that needs both the whole
sequence (the mean of channel 0) and its true last step (channel 1 at the last valid position), so
padding handled wrongly shows. A map-style Dataset of a Python list, a collate_fn that pads and returns
lengths, Adam, a validation MSE every epoch. Metric: validation MSE (standardized target).
"""
import argparse
import json

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence
from torch.utils.data import DataLoader, Dataset

import trainmedic

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=12)
p.add_argument("--mode", default="watch")
p.add_argument("--out", default=None)
args = p.parse_args()
torch.manual_seed(args.seed)


def make_sequences(n, g):
    seqs, targets = [], []
    for _ in range(n):
        length = int(torch.randint(5, 31, (1,), generator=g))
        s = torch.randn(length, 2, generator=g)
        seqs.append(s)
        targets.append(2.0 * s[:, 0].mean() + s[-1, 1])
    return seqs, torch.stack(targets)


class SeqData(Dataset):
    def __init__(self, seqs, targets):
        self.seqs, self.targets = seqs, targets

    def __len__(self):
        return len(self.seqs)

    def __getitem__(self, i):
        return self.seqs[i], self.targets[i]


def collate(items):
    seqs, ys = zip(*items)
    lengths = torch.tensor([len(s) for s in seqs])
    return pad_sequence(list(seqs), batch_first=True), lengths, torch.stack(ys)


g = torch.Generator().manual_seed(1000 + args.seed)
train_seqs, train_y = make_sequences(2000, g)
val_seqs, val_y = make_sequences(500, g)
mu, sd = train_y.mean(), train_y.std()
train_y, val_y = (train_y - mu) / sd, (val_y - mu) / sd
train_loader = DataLoader(SeqData(train_seqs, train_y), batch_size=64, shuffle=True, collate_fn=collate)
val_loader = DataLoader(SeqData(val_seqs, val_y), batch_size=250, collate_fn=collate)


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(2, 32, batch_first=True)
        self.out = nn.Linear(32, 1)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.out(h[-1]).squeeze(-1)


model = Regressor()
loss_fn = nn.MSELoss()
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

medic = trainmedic.Medic(model, optimizer, mode=args.mode, loss_fn=loss_fn)
with medic:
    for epoch in range(args.epochs):
        model.train()
        for x, lengths, y in train_loader:
            pred = model(x, lengths)
            loss = loss_fn(pred, y)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss, batch=((x, lengths), y))
        model.eval()
        total, n = 0.0, 0
        with torch.no_grad():
            for x, lengths, y in val_loader:
                total += loss_fn(model(x, lengths), y).item() * len(y)
                n += len(y)
        val_mse = total / n
        medic.end_epoch(val_loss=val_mse)
        if medic.should_stop:
            break
        print(f"epoch {epoch} train {loss.item():.4f} val mse {val_mse:.4f}")

if args.out:
    medic.save_report(args.out)
print("FINAL " + json.dumps({"metric": "val_mse", "value": val_mse}))
