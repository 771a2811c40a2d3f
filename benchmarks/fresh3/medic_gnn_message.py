"""Medic-API version of gnn_message.py (the README's `with Medic(...)`, `loss_fn=`, `batch=`).

Node classification on a synthetic stochastic-block-model graph with hand-written message passing.

600 nodes in 4 communities (edges 20x likelier inside a community), weak noisy node features; a two-layer
graph network whose layers average the neighbours' messages with `index_add_` over an edge list (self
loops added, degree normalisation), full-batch Adam with weight decay, a train / validation / test split
of the nodes, the best validation epoch's test error reported. Metric: test error rate.
"""
import argparse
import json

import torch
import torch.nn.functional as F
from torch import nn

import trainmedic

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=150)
p.add_argument("--mode", default="watch")
p.add_argument("--out", default=None)
args = p.parse_args()
torch.manual_seed(args.seed)

N, C, D = 600, 4, 16
g = torch.Generator().manual_seed(1234 + args.seed)
labels = torch.arange(N) % C
labels = labels[torch.randperm(N, generator=g)]
same = labels[:, None] == labels[None, :]
prob = torch.where(same, torch.tensor(0.025), torch.tensor(0.0025))
adj = torch.rand(N, N, generator=g) < prob
adj = torch.triu(adj, diagonal=1)
adj = adj | adj.T
src, dst = adj.nonzero(as_tuple=True)
loops = torch.arange(N)
edge_index = torch.stack([torch.cat([src, loops]), torch.cat([dst, loops])])
centers = torch.randn(C, D, generator=g)
x = 0.5 * centers[labels] + torch.randn(N, D, generator=g)

perm = torch.randperm(N, generator=g)
train_idx, val_idx, test_idx = perm[:180], perm[180:360], perm[360:]
y = labels.clone()


class MeanConv(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)

    def forward(self, h, edge_index):
        s, t = edge_index
        msg = self.lin(h)[s]
        out = torch.zeros(h.shape[0], msg.shape[1], dtype=msg.dtype).index_add_(0, t, msg)
        deg = torch.zeros(h.shape[0]).index_add_(0, t, torch.ones_like(t, dtype=torch.float32))
        return out / deg.clamp(min=1).unsqueeze(1)


class GNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = MeanConv(D, 32)
        self.conv2 = MeanConv(32, C)
        self.drop = nn.Dropout(0.5)

    def forward(self, h, edge_index):
        h = self.drop(F.relu(self.conv1(h, edge_index)))
        return self.conv2(h, edge_index)


model = GNN()
optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)


def error(idx):
    model.eval()
    with torch.no_grad():
        pred = model(x, edge_index).argmax(1)
    return (pred[idx] != y[idx]).float().mean().item()


best_val, best_test = float("inf"), None
medic = trainmedic.Medic(model, optimizer, mode=args.mode,
                         loss_fn=lambda out, y: F.cross_entropy(out[train_idx], y[train_idx]))
with medic:
    for epoch in range(args.epochs):
        model.train()
        out = model(x, edge_index)
        loss = F.cross_entropy(out[train_idx], y[train_idx])
        optimizer.zero_grad()
        loss.backward()
        medic.step(loss, batch=((x, edge_index), y))
        val_err = error(val_idx)
        medic.end_epoch(val_metric=val_err, higher_is_better=False)
        if medic.should_stop:
            break
        if val_err < best_val:
            best_val, best_test = val_err, error(test_idx)
        if epoch % 10 == 0:
            print(f"epoch {epoch} loss {loss.item():.4f} val err {val_err:.4f}")

if args.out:
    medic.save_report(args.out)
print("FINAL " + json.dumps({"metric": "test_error", "value": best_test}))
