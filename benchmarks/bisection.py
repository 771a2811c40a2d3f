"""TM313 batch bisection: forward passes used, and heal with quarantine against a clean run.

1. Random batches of 64 rows from 1000, with k = 1..4 NaN rows among them: does bisection return exactly
   the poisoned rows, and how many forward passes does it use (against one pass per row, 64)?
2. The zoo's dirty-rows setting (3 NaN rows of 1000, batch 64, Adam, 6 epochs) in heal mode with
   ``loss_fn=`` and ``WithIndex``/``QuarantineSampler``, against the same run on clean data.

    .venv/bin/python benchmarks/bisection.py

Writes benchmarks/results/bisection.json.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainmedic import Medic, QuarantineSampler, WithIndex
from trainmedic.heal.forensics import bisect_rows
from trainmedic.zoo._common import mlp, regression_data

OUT = Path(__file__).parent / "results" / "bisection.json"
POISONED = (137, 512, 888)


def data(poison: bool):
    x, y = regression_data(n=1000, d=6, seed=0)
    x = x.clone()
    if poison:
        x[list(POISONED), 2] = float("nan")
    return x, y


def passes_table(trials: int = 50) -> list[dict]:
    x, y = regression_data(n=1000, d=6, seed=0)
    torch.manual_seed(0)
    model = mlp(6, 1)
    g = torch.Generator().manual_seed(0)
    rows = []
    for k in (1, 2, 3, 4):
        used, exact, secs = [], 0, []
        for _ in range(trials):
            idx = torch.randperm(1000, generator=g)[:64]
            bad = idx[torch.randperm(64, generator=g)[:k]]
            xx = x.clone()
            xx[bad, 1] = float("nan")
            t0 = time.perf_counter()
            res = bisect_rows(model, nn.MSELoss(), (xx[idx], y[idx], idx))
            secs.append(time.perf_counter() - t0)
            used.append(res.passes)
            exact += sorted(res.indices) == sorted(bad.tolist())
        bound = 2 * k * math.log2(64 / k) + 1
        rows.append({"k": k, "batch": 64, "trials": trials, "exact": exact, "passes_mean": statistics.mean(used),
                     "passes_max": max(used), "bound_2klog2(B/k)+1": bound, "ms_mean": 1000 * statistics.mean(secs)})
    return rows


def heal_run(poison: bool, epochs: int = 6) -> dict:
    x, y = data(poison)
    torch.manual_seed(0)
    model = mlp(6, 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.MSELoss()
    medic = Medic(model, opt, mode="heal", console=False, loss_fn=loss_fn)
    ds = WithIndex(TensorDataset(x, y))
    loader = DataLoader(ds, batch_size=64,
                        sampler=QuarantineSampler(ds, medic, shuffle=True, generator=torch.Generator().manual_seed(0)))
    t0 = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            loss = loss_fn(model(batch[0]), batch[1])
            opt.zero_grad()
            loss.backward()
            medic.step(loss, batch=batch)
        medic.end_epoch()
    clean = torch.ones(len(x), dtype=torch.bool)
    clean[list(POISONED)] = False
    with torch.no_grad():
        final = float(loss_fn(model(x[clean]), y[clean]))
    tm313 = next((f for f in medic.findings if f.code == "TM313"), None)
    passes = 0
    if tm313 is not None:
        passes = tm313.evidence.get("forward_passes_total", tm313.evidence.get("forward_passes", 0))
    return {"poisoned": poison, "final_loss_on_clean_rows": final, "quarantined": sorted(medic.quarantined),
            "tm313": tm313.message if tm313 else None, "forward_passes": passes,
            "skipped_steps": sum(1 for e in medic.events if e.get("action") == "skip-step"),
            "seconds": time.perf_counter() - t0}


def main() -> None:
    torch.set_num_threads(1)
    table = passes_table()
    print(f"{'k bad of 64':>11} {'exact':>8} {'passes mean':>12} {'max':>5} {'2k log2(B/k)+1':>15} {'ms':>7}")
    for r in table:
        print(f"{r['k']:>11} {r['exact']:>4}/{r['trials']:<3} {r['passes_mean']:>12.1f} {r['passes_max']:>5} "
              f"{r['bound_2klog2(B/k)+1']:>15.1f} {r['ms_mean']:>7.2f}")
    healed, clean = heal_run(True), heal_run(False)
    ratio = healed["final_loss_on_clean_rows"] / clean["final_loss_on_clean_rows"]
    print(f"\nheal, 3 NaN rows of 1000 (batch 64): {healed['tm313']}")
    print(f"  quarantined {healed['quarantined']}, skipped steps {healed['skipped_steps']}, "
          f"forward passes {healed['forward_passes']}")
    print(f"  final loss on the clean rows: heal {healed['final_loss_on_clean_rows']:.4f}, clean run "
          f"{clean['final_loss_on_clean_rows']:.4f} ({ratio:.3f}x)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"passes": table, "heal": healed, "clean": clean, "heal_vs_clean": ratio}, indent=2))
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
