"""One-time cost of pre-flight: the automatic part inside Medic, and the standalone call.

For each workload (zoo data and models) it measures, in one process with interleaved repetitions:

* the median time of a plain training step;
* ``PreflightCallback.seconds``: what ``Medic(..., loss_fn=...)`` spends on its first step (cheap
  checks: one forward+loss replay under the op watcher, no copy), and the first step's wall time with
  pre-flight minus without (it also pays Python's first-call costs of the mode and the hooks);
* a short run (``--steps`` steps, default 100) with ``preflight=True`` against ``preflight=False``:
  the difference is what pre-flight adds to a run;
* ``trainmedic.preflight(...)`` standalone, without and with the overfit check (TM208).

    .venv/bin/python benchmarks/preflight_cost.py [--steps 100] [--reps 5]

Writes benchmarks/results/preflight_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import trainmedic
from trainmedic import Medic
from trainmedic.preflight import PreflightCallback
from trainmedic.zoo._common import classification_data, mlp, regression_data
from trainmedic.zoo.healthy_cnn import cnn, images

OUT = Path(__file__).parent / "results" / "preflight_cost.json"

WORKLOADS = {
    "tiny-mlp (regression)": (lambda: regression_data(n=4096, d=16), lambda: mlp(16, 1), nn.MSELoss(), 32),
    "mlp (classification)": (lambda: classification_data(n=4096), lambda: mlp(20, 4, hidden=128, depth=3),
                             nn.CrossEntropyLoss(), 64),
    "cnn (BatchNorm, dropout)": (lambda: images(n=512), cnn, nn.CrossEntropyLoss(), 32),
}


def short_run(make_model, loss_fn, x, y, bs, steps, preflight: bool) -> tuple[float, float, float]:
    torch.manual_seed(0)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    medic = Medic(model, opt, console=False, loss_fn=loss_fn, preflight=preflight)
    n = len(x)
    t0 = time.perf_counter()
    first = 0.0
    for i in range(steps):
        j = (i * bs) % (n - bs)
        xb, yb = x[j:j + bs], y[j:j + bs]
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        medic.step(loss, batch=(xb, yb))
        if i == 0:
            first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    pre = next((cb.seconds for cb in medic.callbacks if isinstance(cb, PreflightCallback)), 0.0)
    return total, pre, first


def plain_step_ms(make_model, loss_fn, x, y, bs, steps=50) -> float:
    torch.manual_seed(0)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for i in range(steps):
        xb, yb = x[i * bs % (len(x) - bs):][:bs], y[i * bs % (len(x) - bs):][:bs]
        t0 = time.perf_counter()
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times[5:])


def standalone_ms(make_model, loss_fn, x, y, bs, overfit) -> tuple[float, list[str]]:
    torch.manual_seed(0)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    fs = trainmedic.preflight(model, loss_fn, (x[:bs], y[:bs]), opt, overfit=overfit)
    return 1000 * (time.perf_counter() - t0), [f.code for f in fs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'workload':<26} {'step ms':>8} {'medic pre-flight ms':>20} {'= steps':>8} {'1st step +ms':>13} "
          f"{f'{args.steps}-step run +%':>16} {'preflight() ms':>15} {'+overfit ms':>12}  findings")
    for name, (data, make_model, loss_fn, bs) in WORKLOADS.items():
        x, y = data()
        step = plain_step_ms(make_model, loss_fn, x, y, bs)
        on, off, pre, first_on, first_off = [], [], [], [], []
        short_run(make_model, loss_fn, x, y, bs, 10, True)  # warm up
        for _ in range(args.reps):
            for flag in (True, False):
                total, p, first = short_run(make_model, loss_fn, x, y, bs, args.steps, flag)
                (on if flag else off).append(total)
                (first_on if flag else first_off).append(first)
                if flag:
                    pre.append(p)
        pre_ms = 1000 * statistics.median(pre)
        first_extra_ms = 1000 * (statistics.median(first_on) - statistics.median(first_off))
        run_pct = 100 * (statistics.median(on) / statistics.median(off) - 1)
        sa_ms, codes = standalone_ms(make_model, loss_fn, x, y, bs, overfit=False)
        of_ms, codes2 = standalone_ms(make_model, loss_fn, x, y, bs, overfit=True)
        row = {"workload": name, "plain_step_ms": step, "medic_preflight_ms": pre_ms,
               "first_step_extra_ms": first_extra_ms,
               "medic_preflight_in_steps": pre_ms / step, "short_run_steps": args.steps,
               "short_run_overhead_pct": run_pct, "short_run_s_on": statistics.median(on),
               "short_run_s_off": statistics.median(off), "standalone_ms": sa_ms, "standalone_overfit_ms": of_ms,
               "findings": sorted(set(codes) | set(codes2))}
        rows.append(row)
        print(f"{name:<26} {step:>8.2f} {pre_ms:>20.1f} {pre_ms / step:>8.1f} {first_extra_ms:>13.1f} "
              f"{run_pct:>+15.1f}% "
              f"{sa_ms:>15.1f} {of_ms:>12.1f}  {row['findings'] or 'none'}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"steps": args.steps, "reps": args.reps, "workloads": rows}, indent=2))
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
