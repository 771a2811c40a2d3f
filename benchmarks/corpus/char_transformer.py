"""A tiny character-level transformer language model on 24 KB of Shakespeare.

Step-based: random windows each step, AdamW, linear warmup then cosine decay (LambdaLR stepped every
step), gradient clipping, an evaluation every 50 steps; the metric is the validation loss in nats/char.
"""

import argparse
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--steps", type=int, default=250)
parser.add_argument("--lr", type=float, default=3e-3)
args = parser.parse_args()
torch.manual_seed(args.seed)

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "data", "shakespeare.txt"), encoding="utf-8") as f:
    text = f.read()
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
n = int(0.9 * len(data))
train_data, val_data = data[:n], data[n:]
vocab_size = len(chars)
block, batch = 32, 24


def get_batch(split, gen=None):
    src = train_data if split == "train" else val_data
    ix = torch.randint(len(src) - block - 1, (batch,), generator=gen)
    x = torch.stack([src[i:i + block] for i in ix])
    y = torch.stack([src[i + 1:i + block + 1] for i in ix])
    return x, y


class CharLM(nn.Module):
    def __init__(self, vocab, d=32, heads=4, layers=2):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(block, d)
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, dropout=0.1, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers)
        self.ln = nn.LayerNorm(d)
        self.out = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(block))

    def forward(self, idx):
        t = idx.shape[1]
        h = self.tok(idx) + self.pos(torch.arange(t))
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        return self.out(self.ln(h))


model = CharLM(vocab_size)
optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
warmup = 30


def lr_lambda(step):
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, args.steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


@torch.no_grad()
def estimate_val_loss(iters=8):
    model.eval()
    g = torch.Generator().manual_seed(1234)
    losses = []
    for _ in range(iters):
        xv, yv = get_batch("val", g)
        logits = model(xv)
        losses.append(F.cross_entropy(logits.reshape(-1, vocab_size), yv.reshape(-1)).item())
    model.train()
    return sum(losses) / len(losses)


for step in range(args.steps):
    xb, yb = get_batch("train")
    logits = model(xb)
    loss = F.cross_entropy(logits.view(-1, vocab_size), yb.view(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    if step % 50 == 0 or step == args.steps - 1:
        val_loss = estimate_val_loss()
        print(f"step {step}: train {loss.item():.3f} val {val_loss:.3f}")

print("FINAL " + json.dumps({"metric": "val_loss", "value": estimate_val_loss(iters=16)}))
