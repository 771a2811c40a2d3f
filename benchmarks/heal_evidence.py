"""Candidate evidence for "a rate too high that still learns" (issue 12, round three), on plain runs.

Three measurements behind the "Round three" section of ``benchmarks/HEAL_RESULTS.md``, none of which
became a rule (each is printed per task, rate multiple of the tuned rate and seed):

* ``ratio``: the global update/weight norm ratio, sampled every 25 steps over 2 epochs (median, q10, q90);
* ``trend``: over the first 100-step window after step 50, the drop of the median loss between its two
  halves in units of the step noise (``trainmedic.heal.progress.step_noise``), and the window's median;
* ``upward``: from weights trained ``--pre`` steps at ``--frac`` x the tuned rate, an exponential sweep
  up ``--decades`` decades in ``--steps`` steps: where ``lr_find.suggest`` puts the minimum and
  ``lr_probe.rise_point`` the rise, as multiples of the tuned rate.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/heal_evidence.py ratio regression-mlp-sgd classify-mlp-adam
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/heal_evidence.py trend classify-mlp-adam charlm-gru-adamw
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/heal_evidence.py upward regression-mlp-sgd classify-mlp-adam
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from heal_tasks import TASKS

from trainmedic.heal.lr_probe import rise_point
from trainmedic.heal.progress import step_noise
from trainmedic.lr_find import suggest

TUNED = {"regression-mlp-sgd": 0.1, "classify-mlp-adam": 0.001, "digits-cnn-sgdm": 0.0316, "charlm-gru-adamw": 0.01,
         "held-out: autoencoder-rmsprop": 0.00316, "held-out: charlm-transformer-adam": 0.01}  # heal.py's, 4 seeds


def _steps(task, data, seed):
    return (b for e in range(1000) for b in task.batches(data, e, seed))


def ratio(task, mult: float, seed: int) -> str:
    data = task.data()
    torch.manual_seed(seed)
    model = task.model()
    params = list(model.parameters())
    opt = task.optimizer(params, TUNED[task.name] * mult)
    it, out = _steps(task, data, seed), []
    for t in range(2 * task.steps_per_epoch(data)):
        xb, yb = next(it)
        loss = task.loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        before = [p.detach().clone() for p in params] if t % 25 == 0 else None
        opt.step()
        if before is not None:
            u = math.sqrt(sum(float((p.detach() - b).pow(2).sum()) for p, b in zip(params, before)))
            out.append(u / math.sqrt(sum(float(b.pow(2).sum()) for b in before)))
    r = np.array(out)
    return f"ratio median {np.nanmedian(r):.2e} q10 {np.nanquantile(r, .1):.2e} q90 {np.nanquantile(r, .9):.2e}"


def trend(task, mult: float, seed: int) -> str:
    data = task.data()
    torch.manual_seed(seed)
    model = task.model()
    opt = task.optimizer(list(model.parameters()), TUNED[task.name] * mult)
    it, losses = _steps(task, data, seed), []
    for _ in range(150):
        xb, yb = next(it)
        loss = task.loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    w = np.array(losses[50:150])
    if not np.isfinite(w).all():
        return "non-finite"
    drop = float(np.median(w[:50]) - np.median(w[50:]))
    return f"drop/noise {drop / step_noise(w):+.2f}, median {np.median(w):.3g}, constant level {data.constant_level:.3g}"


def upward(task, mult: float, seed: int, frac: float = 0.2, pre: int = 100, steps: int = 24, decades: float = 2.0) -> str:
    data = task.data()
    torch.manual_seed(seed)
    model = task.model()
    r = TUNED[task.name] * frac
    opt = task.optimizer(list(model.parameters()), r)
    it = _steps(task, data, seed)
    for _ in range(pre):
        xb, yb = next(it)
        loss = task.loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    lrs, losses = [], []
    for i in range(steps):
        lr = r * 10 ** (decades * i / (steps - 1))
        for g in opt.param_groups:
            g["lr"] = lr
        xb, yb = next(it)
        loss = task.loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        lrs.append(lr)
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            break
        opt.step()
    n = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
    s = suggest(lrs[:n], losses[:n])
    rise = rise_point(lrs[:n], losses[:n], s["smoothed"])
    t = TUNED[task.name]
    return (f"from {frac:g}x tuned: minimum at {(s['lr_min_loss'] or math.nan) / t:.3g}x (dip {s['valley_z']:.1f} se), "
            f"rise at {(rise or math.nan) / t:.3g}x the tuned rate")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["ratio", "trend", "upward"])
    ap.add_argument("tasks", nargs="*")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    torch.set_num_threads(1)
    fn = {"ratio": ratio, "trend": trend, "upward": upward}[args.what]
    mults = (1.0,) if args.what == "upward" else (1.0, 3.0, 10.0, 30.0)
    for task in TASKS:
        if args.tasks and task.name not in args.tasks:
            continue
        for mult in mults:
            for seed in args.seeds:
                print(f"{task.name:<34} x{mult:<4g} s{seed}  {fn(task, mult, seed)}", flush=True)


if __name__ == "__main__":
    main()
