"""Per-step training curve of one heal run, driven exactly as ``heal.py`` drives it (round nine: is a late
validation rise that heal does not repair a rebound of the training loss that TM306/TM305 missed?).

``run``: for a task, a rate multiple and a seed, ``heal.train`` with a recording wrapper around the driver.
Per optimizer step the script took (probe steps included) it keeps the training loss, the rate in the
optimizer, the step window's smoothed level, best and initial loss (what TM305/TM306 judge against), and with
``--val-every 1`` the validation loss of the weights after that step (``task.evaluate``: no_grad, no
randomness, no state of the run touched). The wrapper only reads: the run ends where the benchmark's ends.
``--driver plain`` traces the ordinary loop (the tuned run: ``--mult 1``).

``summarize``: for each trace, per epoch the training loss's median and the spread of the validation loss
within the epoch; at every 10-step window check of the last epochs the TM306 and TM305 statistics, computed by
the engine's own functions, with each threshold; and the largest smoothed/best ratio from step 200 on
(TM305's first condition), which the healthy tuned run reaches too.

    cd benchmarks
    PYTHONPATH=../src python heal_trace.py run --task digits-cnn-sgdm --tuned-lr 0.0316 --mult 30 --seed 0 \\
        --val-every 1 --out /tmp/x30.json
    PYTHONPATH=../src python heal_trace.py summarize /tmp/tuned.json /tmp/x30.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import heal
import numpy as np
import torch
from heal_tasks import TASKS

from trainmedic.config import Thresholds
from trainmedic.rules.runtime import detect_divergence, detect_loss_spike
from trainmedic.signals.monitor import median, robust_sigma


class Recorder:
    """Wraps heal's driver: forwards every call, records the loss, the rate and the window's state."""

    def __init__(self, inner: Any, opt: torch.optim.Optimizer, val: Any = None, val_every: int = 0) -> None:
        self.inner, self.opt = inner, opt
        self.val, self.val_every = val, val_every  # evaluate the weights after every k-th step (no side effect)
        self.rows: list[dict[str, Any]] = []
        self.vals: list[float] = []
        self.epoch = 0
        self.calls = 0  # steps the script took (probe steps included: they are the script's steps too)

    def step(self, loss: torch.Tensor, **kw: Any) -> Any:
        lr = float(self.opt.param_groups[0]["lr"])
        out = self.inner.step(loss, **kw)
        w = self.inner.engine.window if hasattr(self.inner, "engine") else None
        row = {"i": self.calls, "epoch": self.epoch, "loss": float(loss.detach()), "lr": lr}
        if w is not None:
            row.update(smoothed=w.smoothed, best=w.best, best_step=w.best_step, initial=w.initial)
        self.calls += 1
        if self.val_every and self.calls % self.val_every == 0:
            row["val_after"] = self.val()
        self.rows.append(row)
        return out

    def end_epoch(self, val_loss: float) -> None:
        self.vals.append(val_loss)
        self.epoch += 1
        self.inner.end_epoch(val_loss=val_loss)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    heal.PASS_LOSS_FN = True  # as `heal.py --loss-fn`
    task = next(t for t in TASKS if t.name == args.task)
    recorders: list[Recorder] = []
    make = heal.make_driver

    def recording(kind: str, model: Any, opt: Any, data: Any, loss_fn: Any = None) -> Recorder:
        r = Recorder(make(kind, model, opt, data, loss_fn), opt, lambda: task.evaluate(model, data), args.val_every)
        recorders.append(r)
        return r

    heal.make_driver = recording
    result = heal.train(task, args.tuned_lr * args.mult, args.seed, args.driver)
    rec = recorders[0]
    out = {"task": task.name, "mult": args.mult, "tuned_lr": args.tuned_lr, "seed": args.seed, "driver": args.driver,
           "final": result.final, "vals": result.vals, "findings": result.findings, "actions": result.actions,
           "rows": [{k: heal._round(v) for k, v in r.items()} for r in rec.rows]}
    args.out.write_text(json.dumps(out, default=float))
    print(f"{task.name} x{args.mult:g} s{args.seed} {args.driver}: final {result.final:.4g}, vals "
          + " ".join(f"{v:.3g}" for v in result.vals))


def summarize(paths: list[Path], from_epoch: int) -> None:
    cfg = Thresholds()
    p, base_n = cfg.spike_persist, max(2 * cfg.spike_persist, 40)
    for path in paths:
        d = json.loads(path.read_text())
        rows = d["rows"]
        losses = np.array([r["loss"] for r in rows], dtype=float)
        print(f"\n== {path.name}: {d['task']} x{d['mult']:g} s{d['seed']} {d['driver']}: final {d['final']:.4g}; "
              f"epoch-end validation {' '.join(f'{v:.3g}' for v in d['vals'])}")
        for a in d["actions"]:
            if a["action"] in ("rollback", "probe"):
                print(f"   step {a['step']}: {a['action']} ({a['reason']}) lr {a.get('lr_before')} -> {a.get('lr_after')}")
        for e in range(from_epoch, len(d["vals"])):
            rs = [r for r in rows if r["epoch"] == e]
            v = [r["val_after"] for r in rs if "val_after" in r]
            line = (f"   epoch {e}: training loss median {median(np.array([r['loss'] for r in rs])):.4f}, "
                    f"max {max(r['loss'] for r in rs):.3f}")
            if v:
                line += (f"; validation after each step: median {median(np.array(v)):.3f}, min {min(v):.3f}, "
                         f"max {max(v):.3f}, last five {' '.join(f'{x:.3f}' for x in v[-5:])}")
            print(line)
        # TM305's first condition (smoothed above 4x best): the engine's own window where the trace has it (heal);
        # for the plain loop the same smoothed level (median of the last `smooth` losses at each check) and its best
        if "best" in rows[-1]:
            checks = [(r["i"], r["smoothed"] / r["best"]) for r in rows
                      if r["i"] >= 200 and (r["i"] + 1) % cfg.check_every == 0 and r["best"] > 0]
        else:
            best, checks = math.inf, []
            for i in range(cfg.smooth - 1, len(rows), cfg.check_every):
                sm = median(losses[i + 1 - cfg.smooth:i + 1])
                best = min(best, sm) if i >= cfg.warmup_steps else best
                if i >= 200:
                    checks.append((i, sm / best))
        at, worst = max(checks, key=lambda c: c[1])
        print(f"   largest smoothed/best from step 200 ({'the engine' if 'best' in rows[-1] else 'recomputed'}): "
              f"{worst:.2f} at step {at} (TM305 needs {cfg.divergence_ratio:g}, and a rise of half the progress)")
        # the training loss's own swings: medians of consecutive 20-step windows (from step 180 to the end)
        meds = [median(losses[i - 19:i + 1]) for i in range(len(losses) - 1, 179 + 19, -20)][::-1]
        rises = [b / a for a, b in zip(meds, meds[1:])]
        print(f"   training loss, medians of 20-step windows up to the last step: {' '.join(f'{m:.4f}' for m in meds)}; "
              f"largest rise between neighbours {max(rises):.2f}x")
        if "best" not in rows[-1]:
            continue
        first_check = next(r["i"] for r in rows if r["epoch"] == from_epoch)
        for r in rows:
            i = r["i"]
            if i < first_check or (i + 1) % cfg.check_every:
                continue
            w = losses[max(0, i + 1 - cfg.window):i + 1]
            steps = np.arange(i + 1 - len(w), i + 1)
            recent, base = w[-p:], w[-(p + base_n):-p]
            bm = median(base)
            sigma = robust_sigma(base, bm)
            progress = max(r["initial"] - r["best"], 0.0)
            q = len(recent) // 4
            spike = detect_loss_spike(w, steps, r["initial"], r["best"], cfg)
            div = detect_divergence(r["smoothed"], r["best"], r["best_step"], r["initial"], cfg, w, steps)
            print(f"   step {i}: TM306 {'FIRES' if spike else 'silent'}: 3/4 of the last {p} losses above "
                  f"{float(np.partition(recent, q)[q]):.4f} (median {median(recent):.4f}); baseline {bm:.4f}, "
                  f"bar {bm + max(cfg.spike_loss_rel * abs(bm), cfg.spike_loss_k * sigma, cfg.spike_loss_progress * progress):.3f} "
                  f"(rel {bm * (1 + cfg.spike_loss_rel):.4f}, {cfg.spike_loss_k:g} sigma {bm + cfg.spike_loss_k * sigma:.4f}, "
                  f"progress {bm + cfg.spike_loss_progress * progress:.3f}) | TM305 {'FIRES' if div else 'silent'}: "
                  f"smoothed {r['smoothed']:.4f}, best {r['best']:.4f}, rise {r['smoothed'] - r['best']:.4f} "
                  f"needs > {(cfg.divergence_ratio - 1) * r['best']:.4f} and > {cfg.divergence_progress * progress:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="trace one run")
    r.add_argument("--task", required=True)
    r.add_argument("--tuned-lr", type=float, required=True, help="the tuned rate, as heal.py prints it (0.0316)")
    r.add_argument("--mult", type=float, required=True, help="start at this multiple of the tuned rate")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--driver", default="heal", choices=["plain", "heal"])
    r.add_argument("--val-every", type=int, default=0,
                   help="also evaluate the weights after every k-th step (task.evaluate: no_grad, no randomness)")
    r.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("summarize", help="the tables of round nine from traces")
    s.add_argument("paths", type=Path, nargs="+")
    s.add_argument("--from-epoch", type=int, default=5)
    args = ap.parse_args()
    if args.cmd == "run":
        run(args)
    else:
        summarize(args.paths, args.from_epoch)


if __name__ == "__main__":
    main()
