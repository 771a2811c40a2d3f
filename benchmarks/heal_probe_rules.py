"""Which rule turns a short online probe from the initial weights into a good constant learning rate?

The evidence behind ``trainmedic.heal.lr_probe``'s ``minimum/10``. For each task of ``benchmarks/heal.py``
and each seed, a fresh model runs the online probe (36 steps, 3 decades below a ceiling of 10x, 30x and
100x the tuned rate), exactly as heal does after rolling back to step 0. Each candidate rule's rate is
then judged on the grid curve that ``benchmarks/heal.py`` measured (mean final validation loss per grid
rate, interpolated in log-rate), as a ratio to the tuned rate's loss. Cheap: no full training per rule.

    .venv/bin/python benchmarks/heal.py --seeds 0 1        # writes the grid curves to results/heal.json
    .venv/bin/python benchmarks/heal_probe_rules.py --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np
import torch
from heal_tasks import TASKS

from trainmedic.heal.lr_probe import LRProbe, ProbeDone
from trainmedic.lr_find import suggest

RESULTS = Path(__file__).parent / "results" / "heal.json"
RULES = ("minimum/3", "minimum/10", "steepest", "valley")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--results", type=Path, default=RESULTS, help="a benchmarks/heal.py JSON with the grids")
    args = ap.parse_args()
    torch.set_num_threads(1)
    grids = {t["task"]: t for t in json.loads(args.results.read_text())["tasks"]}
    ratios: dict[str, dict[str, list[float]]] = {}
    print(f"{'task':<34} {'seed':>4} {'start':>6} {'lr_min/tuned':>12}  " + "  ".join(f"{r:>10}" for r in RULES))
    for task in TASKS:
        if task.name not in grids:
            continue
        g = grids[task.name]
        tuned = g["tuned_lr"]
        lrs = sorted(float(k) for k in g["grid"])
        vals = np.array([g["grid"][f"{lr:g}"] for lr in lrs], dtype=float)
        worst = np.nanmax(vals[np.isfinite(vals)])
        vals = np.where(np.isfinite(vals), vals, 10 * worst)
        base = float(np.interp(math.log10(tuned), np.log10(lrs), vals))
        data = task.data()
        for seed in args.seeds:
            for mult in (10, 30, 100):
                torch.manual_seed(seed)
                model = task.model()
                opt = task.optimizer(list(model.parameters()), tuned * mult)
                probe = LRProbe(tuned * mult)
                stream = (b for epoch in range(task.epochs) for b in task.batches(data, epoch, seed))
                while True:
                    xb, yb = next(stream)
                    loss = task.loss_fn(model(xb), yb)
                    opt.zero_grad()
                    loss.backward()
                    ans = probe.observe(float(loss.detach()))
                    if isinstance(ans, ProbeDone):
                        break
                    for group in opt.param_groups:
                        group["lr"] = ans.lr
                    opt.step()
                s = suggest(probe.lrs, probe.losses)
                cells = []
                for r in RULES:
                    lr = s["candidates"][r]
                    x = float(np.interp(math.log10(lr), np.log10(lrs), vals)) / base if lr else math.inf
                    ratios.setdefault(task.name, {}).setdefault(r, []).append(x)
                    cells.append(f"{x:>10.2f}")
                lr_min = s["lr_min_loss"] / tuned if s["lr_min_loss"] else math.nan
                print(f"{task.name:<34} {seed:>4} {mult:>5}x {lr_min:>12.2f}  " + "  ".join(cells), flush=True)
    print("\nworst and median interpolated loss ratio per rule and task")
    for name, per_rule in ratios.items():
        print(f"  {name:<34} " + "  ".join(f"{r} {max(v):.2f}/{statistics.median(v):.2f}" for r, v in per_rule.items()))


if __name__ == "__main__":
    main()
