"""Medic-API version of tied_lm.py (the README's `with Medic(...)`, `loss_fn=`, `batch=`).

A weight-tied neural n-gram language model on synthetic text, under bfloat16 autocast on CPU.

The text comes from a fixed random second-order Markov source over 40 token ids (a few likely
successors per context). The model embeds the previous 4 tokens, mixes them through a hidden layer
projected back to the embedding width, and scores the vocabulary with the embedding matrix itself
(weight tying). Random windows each step, SGD with momentum, the forward pass and loss under
torch.autocast("cpu", dtype=torch.bfloat16), an evaluation every 200 steps.
Metric: validation cross-entropy in nats/token.
"""
import argparse
import json

import torch
import torch.nn.functional as F
from torch import nn

import trainmedic

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--steps", type=int, default=1200)
p.add_argument("--mode", default="watch")
p.add_argument("--out", default=None)
args = p.parse_args()
torch.manual_seed(args.seed)

V, CTX, EMB = 40, 4, 32
src = torch.Generator().manual_seed(2024)
table = torch.randn(V, V, V, generator=src) * 2.5
probs = torch.softmax(table, dim=-1)


def generate(n, g):
    toks = [0, 1]
    for _ in range(n - 2):
        toks.append(int(torch.multinomial(probs[toks[-2], toks[-1]], 1, generator=g)))
    return torch.tensor(toks)


g = torch.Generator().manual_seed(args.seed)
train_text, val_text = generate(30000, g), generate(5000, g)


def windows(text, idx):
    ctx = torch.stack([text[idx + k] for k in range(CTX)], dim=1)
    return ctx, text[idx + CTX]


class NGramLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, EMB)
        self.hidden = nn.Linear(CTX * EMB, 128)
        self.proj = nn.Linear(128, EMB)
        self.bias = nn.Parameter(torch.zeros(V))

    def forward(self, ctx):
        h = torch.tanh(self.hidden(self.emb(ctx).flatten(1)))
        return self.proj(h) @ self.emb.weight.t() + self.bias


model = NGramLM()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
val_idx = torch.arange(0, len(val_text) - CTX)
val_ctx, val_next = windows(val_text, val_idx)


def evaluate():
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(val_ctx).float(), val_next).item()
    model.train()
    return loss


medic = trainmedic.Medic(model, optimizer, mode=args.mode,
                         loss_fn=lambda logits, nxt: F.cross_entropy(logits.float(), nxt))
with medic:
    for step in range(args.steps):
        idx = torch.randint(0, len(train_text) - CTX, (128,))
        ctx, nxt = windows(train_text, idx)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(ctx)
            loss = F.cross_entropy(logits.float(), nxt)
        optimizer.zero_grad()
        loss.backward()
        medic.step(loss, batch=(ctx, nxt))
        if step % 200 == 0 or step == args.steps - 1:
            val = evaluate()
            medic.end_epoch(val_loss=val)
            print(f"step {step} loss {loss.item():.4f} val {val:.4f}")

if args.out:
    medic.save_report(args.out)
print("FINAL " + json.dumps({"metric": "val_nats_per_token", "value": val}))
