"""A small nn.TransformerEncoder classifies padded token sequences, with a key padding mask.

Synthetic sequences of 8-32 tokens (vocabulary 50, 0 is padding); the class is which of the tokens
3, 4, 5 occurs most often. Learned positions, a masked mean pool, AdamW, clip_grad_norm_ at 1.0,
batches cut from a shuffled index each epoch. Metric: validation error rate.
"""
import argparse
import json

import torch
import torch.nn.functional as F
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=6)
args = p.parse_args()
torch.manual_seed(args.seed)

VOCAB, MAXLEN, PAD = 50, 32, 0


def make(n, g):
    x = torch.zeros(n, MAXLEN, dtype=torch.long)
    y = torch.zeros(n, dtype=torch.long)
    for i in range(n):
        length = int(torch.randint(8, MAXLEN + 1, (1,), generator=g))
        toks = torch.randint(1, VOCAB, (length,), generator=g)
        boost = int(torch.randint(3, 6, (1,), generator=g))
        extra = torch.rand(length, generator=g) < 0.15
        toks[extra] = boost
        counts = torch.stack([(toks == t).sum() for t in (3, 4, 5)])
        x[i, :length] = toks
        y[i] = int(torch.argmax(counts))
    return x, y


g = torch.Generator().manual_seed(7 + args.seed)
x_train, y_train = make(1600, g)
x_val, y_val = make(400, g)


class Classifier(nn.Module):
    def __init__(self, d=32):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, d, padding_idx=PAD)
        self.pos = nn.Parameter(torch.randn(MAXLEN, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        pad = x == PAD
        h = self.encoder(self.tok(x) + self.pos[: x.shape[1]], src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).float()
        pooled = (h * keep).sum(1) / keep.sum(1)
        return self.head(pooled)


model = Classifier()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

for epoch in range(args.epochs):
    model.train()
    perm = torch.randperm(len(x_train))
    for start in range(0, len(perm), 64):
        idx = perm[start:start + 64]
        logits = model(x_train[idx])
        loss = F.cross_entropy(logits, y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    with torch.no_grad():
        err = (model(x_val).argmax(1) != y_val).float().mean().item()
    print(f"epoch {epoch} loss {loss.item():.4f} val err {err:.3f}")

print("FINAL " + json.dumps({"metric": "val_error", "value": err}))
