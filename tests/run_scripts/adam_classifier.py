"""A 4-class MLP trained with Adam, 32 steps an epoch, validated after each (the rate audit under `run`, TM343).

--lr: the rate (1e-3 is good, 3e-2 is 30x too high); --loss: how the training loss is written (functional:
F.cross_entropy; module: nn.CrossEntropyLoss(); smoothed: with label_smoothing=0.1; weighted: with weight=;
hand: log_softmax + gather, no functional loss call; nll: the model ends in LogSoftmax, F.nll_loss;
log_softmax_nll: F.nll_loss(F.log_softmax(output))); --clip: clip_grad_norm_ at 1.0; --schedule: a StepLR
(x0.5 every 64 steps); --schedule-epoch: a StepLR stepped once an epoch, after the validation (x0.5 every 2 epochs). Prints each epoch's validation loss in full precision,
then a digest of the final weights and of the RNG state (what a run that changed nothing must reproduce).
"""

import argparse
import hashlib

import torch
from sklearn.datasets import make_classification
from torch import nn
from torch.nn import functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--loss", default="functional", choices=["functional", "module", "smoothed", "weighted", "hand", "nll", "log_softmax_nll"])
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--epochs", type=int, default=4)
parser.add_argument("--dropout", type=float, default=0.2)
parser.add_argument("--clip", action="store_true")
parser.add_argument("--schedule", action="store_true")
parser.add_argument("--schedule-epoch", action="store_true")
args = parser.parse_args()

x, y = make_classification(n_samples=1536, n_features=20, n_informative=12, n_redundant=4, n_classes=4,
                           n_clusters_per_class=3, flip_y=0.03, class_sep=1.5, random_state=0)
x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
x, y, xv, yv = x[:1024], y[:1024], x[1024:], y[1024:]

torch.manual_seed(args.seed)
model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Dropout(args.dropout), nn.Linear(128, 128), nn.ReLU(),
                      nn.Linear(128, 4), *([nn.LogSoftmax(dim=1)] if args.loss == "nll" else []))
opt = torch.optim.Adam(model.parameters(), lr=args.lr)
scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=64, gamma=0.5) if args.schedule else None
per_epoch = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5) if args.schedule_epoch else None
module_loss = nn.CrossEntropyLoss(label_smoothing=0.1 if args.loss == "smoothed" else 0.0,
                                  weight=torch.ones(4) if args.loss == "weighted" else None)


def training_loss(out, yb):
    if args.loss == "functional":
        return F.cross_entropy(out, yb)
    if args.loss == "nll":
        return F.nll_loss(out, yb)
    if args.loss == "log_softmax_nll":
        return F.nll_loss(F.log_softmax(out, dim=1), yb)
    if args.loss == "hand":
        return -torch.log_softmax(out, dim=1).gather(1, yb[:, None]).mean()
    return module_loss(out, yb)


for epoch in range(args.epochs):
    model.train()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
    for i in range(0, len(x) - 31, 32):
        xb, yb = x[order[i:i + 32]], y[order[i:i + 32]]
        loss = training_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        if args.clip:
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if scheduler is not None:
            scheduler.step()
    model.eval()
    with torch.no_grad():
        val = float(F.cross_entropy(model(xv), yv))
    print(f"epoch {epoch} val {val!r} lr {opt.param_groups[0]['lr']!r}")
    if per_epoch is not None:
        per_epoch.step()
digest = hashlib.sha256()
for t in model.state_dict().values():
    digest.update(t.detach().numpy().tobytes())
print("weights", digest.hexdigest())
print("rng", hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest())
