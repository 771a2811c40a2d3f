"""Sentiment of synthetic "reviews" (bags of token ids) with an EmbeddingBag classifier.

bfloat16 autocast on CPU, gradient accumulation over 4 micro-batches (the loss divided by 4, one
optimizer step per 4 backwards), AdamW with a cosine schedule stepped per optimizer step, validation
every epoch; the metric is the validation error rate.
"""

import argparse
import json

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

VOCAB, LENGTH = 600, 40


def make_reviews(n, gen):
    tokens = torch.randint(0, VOCAB, (n, LENGTH), generator=gen)
    # tokens 0-49 are "positive" words, 50-99 "negative": the label is which kind dominates
    pos = (tokens < 50).sum(1)
    neg = ((tokens >= 50) & (tokens < 100)).sum(1)
    noise = torch.randn(n, generator=gen) * 0.5
    labels = ((pos - neg).float() + noise > 0).float()
    return tokens, labels


class BagClassifier(nn.Module):
    def __init__(self, vocab, dim=32):
        super().__init__()
        self.emb = nn.EmbeddingBag(vocab, dim, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, tokens):
        return self.mlp(self.emb(tokens)).squeeze(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    x_train, y_train = make_reviews(4000, g)
    x_val, y_val = make_reviews(1000, g)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=16, shuffle=True)

    model = BagClassifier(VOCAB)
    criterion = nn.BCEWithLogitsLoss()
    accum = 4
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(loader) // accum)

    for epoch in range(args.epochs):
        model.train()
        optimizer.zero_grad()
        for i, (tokens, labels) in enumerate(loader):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(tokens)
            loss = criterion(logits.float(), labels) / accum
            loss.backward()
            if (i + 1) % accum == 0:
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
        model.eval()
        with torch.no_grad():
            val_logits = model(x_val)
            val_loss = criterion(val_logits, y_val).item()
            val_err = ((val_logits > 0).float() != y_val).float().mean().item()
        print(f"epoch {epoch}: val_loss={val_loss:.4f} val_err={val_err:.4f}")

    print("FINAL " + json.dumps({"metric": "val_error", "value": val_err}))


if __name__ == "__main__":
    main()
