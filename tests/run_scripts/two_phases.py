"""Two training phases, one optimizer each: pre-train a small MLP on four classes, then fine-tune it with a
NEW optimizer (two parameter groups) over the pre-trained body (frozen for two epochs) and a new head,
validated every epoch.

    python two_phases.py [--fault none|pre_lr_low|lr_low|normal_init] [--seed S]

pre_lr_low: the pre-training rate 1000x too low; lr_low: both fine-tuning rates 1000x too low;
normal_init: every fine-tuned parameter drawn again from N(0, 1); freeze_typo: the body, frozen for
the first two fine-tuning epochs, is "unfrozen" with ``p.requires_grad_ = True`` (an attribute, not the method). ``--medic`` drives both phases through the Medic API (one
Medic per optimizer, built next to it) instead of plain optimizer steps.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def blobs(n, classes, seed):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, 16, generator=g) * 2
    y = torch.randint(0, classes, (n,), generator=g)
    return centers[y] + torch.randn(n, 16, generator=g), y


def train(model, opt, loader, epochs, val=None, medic=None, before_epoch=None):
    for epoch in range(epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        model.train()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            if medic is not None:
                medic.step(loss)
            else:
                opt.step()
        if val is not None:
            model.eval()
            with torch.no_grad():
                val_loss = F.cross_entropy(model(val[0]), val[1])
            if medic is not None:
                medic.end_epoch(val_loss=val_loss)
        elif medic is not None:
            medic.end_epoch()


def main(argv=None, medics=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--fault", default="none", choices=["none", "pre_lr_low", "lr_low", "normal_init", "freeze_typo"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--medic", action="store_true")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)

    def watch(model, opt):
        if not args.medic:
            return None
        import trainmedic

        medic = trainmedic.Medic(model, opt, console=False)
        if medics is not None:
            medics.append(medic)
        return medic

    # phase 1: pre-training, 3 epochs of 25 steps
    x, y = blobs(800, 4, args.seed)
    body = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
    pre = nn.Sequential(body, nn.Linear(32, 4))
    opt = torch.optim.Adam(pre.parameters(), lr=2e-3 * (1e-3 if args.fault == "pre_lr_low" else 1))
    medic = watch(pre, opt)
    train(pre, opt, DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True), 3, medic=medic)

    # phase 2: fine-tuning on other classes with a new head and a new optimizer, 6 epochs of 15 steps
    x2, y2 = blobs(1200, 3, args.seed + 100)
    head = nn.Linear(32, 3)
    model = nn.Sequential(body, head)
    if args.fault == "normal_init":
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 1.0)
    low = 1e-3 if args.fault == "lr_low" else 1.0
    for p in body.parameters():  # the pre-trained body stays frozen for the first two epochs
        p.requires_grad = False

    def unfreeze(epoch):
        if epoch == 2:
            for p in body.parameters():
                if args.fault == "freeze_typo":
                    p.requires_grad_ = True
                else:
                    p.requires_grad = True

    opt2 = torch.optim.Adam([{"params": body.parameters(), "lr": 1e-3 * low},
                             {"params": head.parameters(), "lr": 5e-3 * low}])
    medic2 = watch(model, opt2)
    train(model, opt2, DataLoader(TensorDataset(x2[:960], y2[:960]), batch_size=64, shuffle=True), 6,
          val=(x2[960:], y2[960:]), medic=medic2, before_epoch=unfreeze)
    with torch.no_grad():
        err = (model(x2[960:]).argmax(1) != y2[960:]).float().mean().item()
    print(f"error {err:.3f}")


if __name__ == "__main__":
    main()
