"""Topic classification of variable-length synthetic documents with nn.EmbeddingBag and offsets.

Documents are flattened into one token tensor plus offsets (the torchtext tutorial's style), a custom
collate_fn builds them, the model is EmbeddingBag(mode="mean") + Linear, optimizer Adam.
Metric: validation error rate.
"""
import argparse
import json

import torch
from torch import nn
from torch.utils.data import DataLoader

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=6)
args = p.parse_args()
torch.manual_seed(args.seed)
g = torch.Generator().manual_seed(args.seed)

VOCAB, TOPICS = 2000, 4


def make_docs(n):
    docs = []
    for _ in range(n):
        topic = int(torch.randint(0, TOPICS, (1,), generator=g))
        length = int(torch.randint(8, 40, (1,), generator=g))
        # a third of the words come from the topic's own 100-word block, the rest from anywhere
        own = torch.randint(0, 100, (length,), generator=g) + 100 * topic
        other = torch.randint(0, VOCAB, (length,), generator=g)
        pick = torch.rand(length, generator=g) < 0.33
        docs.append((topic, torch.where(pick, own, other)))
    return docs


train_docs, val_docs = make_docs(2000), make_docs(500)


def collate(batch):
    labels = torch.tensor([b[0] for b in batch])
    lengths = torch.tensor([len(b[1]) for b in batch])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    text = torch.cat([b[1] for b in batch])
    return labels, text, offsets


class TextClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.EmbeddingBag(VOCAB, 32, mode="mean")
        self.fc = nn.Linear(32, TOPICS)

    def forward(self, text, offsets):
        return self.fc(self.embedding(text, offsets))


model = TextClassifier()
criterion = torch.nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
train_dl = DataLoader(train_docs, batch_size=32, shuffle=True, collate_fn=collate)
val_dl = DataLoader(val_docs, batch_size=100, collate_fn=collate)


def evaluate():
    model.eval()
    wrong, n = 0, 0
    with torch.no_grad():
        for label, text, offsets in val_dl:
            pred = model(text, offsets).argmax(1)
            wrong += (pred != label).sum().item()
            n += len(label)
    return wrong / n


for epoch in range(args.epochs):
    model.train()
    for label, text, offsets in train_dl:
        optimizer.zero_grad()
        predicted = model(text, offsets)
        loss = criterion(predicted, label)
        loss.backward()
        optimizer.step()
    err = evaluate()
    print(f"epoch {epoch} last loss {loss.item():.3f} val error {err:.3f}")

print("FINAL " + json.dumps({"metric": "val_error", "value": err}))
