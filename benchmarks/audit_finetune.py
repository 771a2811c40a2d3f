"""Does the rate audit (TM343) act on healthy fine-tuning runs? (HEAL_RESULTS.md, round five, "Left open")

The audit was calibrated on runs that start from a fresh initialization. A fine-tune starts from trained
weights, with a fresh optimizer at a sensible rate: a lower rate may win its short replays there (the
short-horizon bias grows as training converges), and heal would then act on a healthy run.

Scenarios (tiny MLPs on sklearn data, Adam; each: pre-train, then the fine-tune plain and under heal with
``loss_fn=`` and ``batch=``):

* ``continue``: pre-train 4 epochs on the 4-class task, then 4 more epochs with a fresh Adam at the same rate
  (a resumed run whose optimizer state was lost);
* ``continue-low``: the same at 1/3 of the rate (a typical second stage);
* ``new-head``: pre-train on 4 classes, replace the head, fine-tune on a relabelled 3-class task (the body at
  the same rate);
* ``new-data``: pre-train on one half of a regression set, fine-tune on the other half with a shifted target;
* ``continue-30x`` (not healthy, for contrast; not in the default list): ``continue`` at 30x the rate.

For each (scenario, seed): did TM343 fire, what heal found, and the fine-tune's final validation under heal
over the plain run's (1.00 = identical). Measured (HEAL_RESULTS.md, "Round six"): TM343 never fired on the
16 healthy fine-tunes; TM317 did, on 4 (continue and continue-low, seeds 0 and 3), and heal's rollback
ended them 1.07-1.16x above the plain run; with ``rules/learning.started_trained`` none, all 16 identical. Usage: ``python benchmarks/audit_finetune.py --seeds 0 1 2 3``.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from torch import nn
from torch.nn import functional as F

from trainmedic import Medic


def _classes(seed: int, n_classes: int = 4):
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=1536, n_features=20, n_informative=12, n_redundant=4, n_classes=n_classes,
                               n_clusters_per_class=3, flip_y=0.03, class_sep=1.5, random_state=seed)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    return x[:1024], y[:1024], x[1024:], y[1024:]


def _regression(seed: int):
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=3072, n_features=10, noise=0.5, random_state=seed)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32).unsqueeze(1)
    y = (y - y.mean()) / y.std()
    return x, y


def _epochs(model, opt, data, loss_fn, epochs, seed, medic=None):
    x, y, xv, yv = data
    vals = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for i in range(0, len(x) - 31, 32):
            xb, yb = x[order[i:i + 32]], y[order[i:i + 32]]
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            if medic is None:
                opt.step()
            else:
                medic.step(loss, batch=(xb, yb))
        model.eval()
        with torch.no_grad():
            v = float(loss_fn(model(xv), yv))
        vals.append(v)
        if medic is not None:
            medic.end_epoch(val_loss=v)
    return vals


def _mlp(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, n_out))


def scenario(name: str, seed: int, mode: str) -> tuple[list[float], list[str]]:
    """The fine-tune's validation per epoch and the codes heal/watch reported during it."""
    torch.manual_seed(seed)
    if name == "new-data":
        x, y = _regression(seed)
        pre = (x[:1024], y[:1024], x[1024:1536], y[1024:1536])
        fine = (x[1536:2560], 0.5 * y[1536:2560] + 0.3, x[2560:], 0.5 * y[2560:] + 0.3)
        model, loss_fn, lr = _mlp(10, 1), F.mse_loss, 1e-3
    else:
        pre = _classes(seed)
        model, loss_fn, lr = _mlp(20, 4), F.cross_entropy, 1e-3
        fine = pre
        if name == "new-head":
            x, y, xv, yv = pre
            fine = (x, y % 3, xv, yv % 3)
    _epochs(model, torch.optim.Adam(model.parameters(), lr=lr), pre, loss_fn, 4, seed)
    if name == "new-head":
        model[-1] = nn.Linear(128, 3)
    if name == "continue-low":
        lr /= 3
    if name == "continue-30x":  # a fault, for contrast: the fine-tune's rate 30x the pre-training's
        lr *= 30
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    medic = None if mode == "plain" else Medic(model, opt, mode=mode, console=False, loss_fn=loss_fn)
    vals = _epochs(model, opt, fine, loss_fn, 4, seed + 100, medic)
    return vals, [f.code for f in medic.findings] if medic is not None else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--scenarios", nargs="+", default=["continue", "continue-low", "new-head", "new-data"])
    ap.add_argument("--out")
    args = ap.parse_args()
    rows = []
    for name in args.scenarios:
        for seed in args.seeds:
            plain, _ = scenario(name, seed, "plain")
            healed, codes = scenario(name, seed, "heal")
            row = {"scenario": name, "seed": seed, "plain": plain, "heal": healed, "codes": codes,
                   "tm343": "TM343" in codes, "ratio": healed[-1] / plain[-1]}
            rows.append(row)
            print(f"{name:13s} s{seed}  TM343={row['tm343']!s:5s}  heal/plain {row['ratio']:.3f}  "
                  f"codes {sorted(set(codes))}", flush=True)
    healthy = [r for r in rows if r["scenario"] != "continue-30x"]
    if healthy:
        acted = [r for r in healthy if r["codes"]]
        print(f"healthy fine-tunes: TM343 on {sum(r['tm343'] for r in healthy)}/{len(healthy)}, any finding on "
              f"{len(acted)}/{len(healthy)}; worst heal/plain {max(r['ratio'] for r in healthy):.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
