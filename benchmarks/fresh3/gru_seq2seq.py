"""GRU encoder-decoder with teacher forcing: reverse a sequence of digit tokens.

Random sequences of 6 tokens from a vocabulary of 10 (plus a start token); the encoder GRU reads the
sequence, its last hidden state starts a decoder GRU that is fed the true previous target token while
training (teacher forcing) and its own previous prediction at evaluation (greedy decoding). Embeddings
for encoder and decoder, Adam, `clip_grad_norm_(1.0)`, fresh random batches every step (no epochs),
evaluation every 200 steps. Metric: token error rate of greedy decoding on a fixed validation set.
"""
import argparse
import json

import torch
import torch.nn.functional as F
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--steps", type=int, default=800)
args = p.parse_args()
torch.manual_seed(args.seed)

V, T, BOS = 10, 6, 10


def make(n, g):
    src = torch.randint(0, V, (n, T), generator=g)
    return src, src.flip(1)


class Seq2Seq(nn.Module):
    def __init__(self, emb=24, hidden=80):
        super().__init__()
        self.enc_emb = nn.Embedding(V, emb)
        self.dec_emb = nn.Embedding(V + 1, emb)
        self.encoder = nn.GRU(emb, hidden, batch_first=True)
        self.decoder = nn.GRU(emb, hidden, batch_first=True)
        self.out = nn.Linear(hidden, V)

    def forward(self, src, tgt_in):
        _, h = self.encoder(self.enc_emb(src))
        dec, _ = self.decoder(self.dec_emb(tgt_in), h)
        return self.out(dec)

    @torch.no_grad()
    def greedy(self, src):
        _, h = self.encoder(self.enc_emb(src))
        tok = torch.full((len(src), 1), BOS)
        outs = []
        for _ in range(T):
            dec, h = self.decoder(self.dec_emb(tok), h)
            tok = self.out(dec).argmax(-1)
            outs.append(tok)
        return torch.cat(outs, 1)


g = torch.Generator().manual_seed(31 + args.seed)
val_src, val_tgt = make(1000, g)
train_src, train_tgt = make(20000, g)
model = Seq2Seq()
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

for step in range(args.steps):
    idx = torch.randint(0, len(train_src), (64,), generator=g)
    src, tgt = train_src[idx], train_tgt[idx]
    tgt_in = torch.cat([torch.full((len(src), 1), BOS), tgt[:, :-1]], 1)
    logits = model(src, tgt_in)
    loss = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    if step % 200 == 199:
        model.eval()
        val_err = (model.greedy(val_src) != val_tgt).float().mean().item()
        model.train()
        print(f"step {step} loss {loss.item():.4f} val token error {val_err:.4f}")

print("FINAL " + json.dumps({"metric": "val_token_error", "value": val_err}))
