"""Offline evidence (issue 12, round four): after a probe from the initial weights, continue from the point
where the probe's ramp passed the chosen rate, instead of restoring the initial weights and warming up.

The probe (``trainmedic.heal.lr_probe.LRProbe``) ramps the rate up exponentially from the restored snapshot;
its steps up to the rate it finally chooses are an exponential warmup to that rate. Today heal throws them
away: it restores the snapshot and warms up linearly over ``heal_warmup_steps`` (50) steps. On a short run
(digits-cnn: 320 steps) the probe's 36 steps plus the 50 of the warmup are a quarter of the run.

For each task, start multiple of the tuned rate and seed, from the initial weights (after ``--lost`` batches
a detection would have used), both variants run the same probe on the run's own batches, then:

* ``restore``: today's heal - the initial weights again, a linear warmup to the chosen rate;
* ``rewind``: the weights and optimizer state the probe had when it reached the chosen rate (the last probe
  step at or below it), no warmup.

Printed: the final validation loss of each over the tuned run's (the tuned finals of ``heal_round3.json``).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/heal_rewind.py regression-mlp-sgd digits-cnn-sgdm
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
from heal_tasks import TASKS

from trainmedic.heal.lr_probe import LRProbe
from trainmedic.signals.stepping import direct_steps

TUNED = {"regression-mlp-sgd": 0.1, "classify-mlp-adam": 0.001, "digits-cnn-sgdm": 0.0316, "charlm-gru-adamw": 0.01,
         "held-out: autoencoder-rmsprop": 0.00316, "held-out: charlm-transformer-adam": 0.01}
ROUND3 = Path(__file__).parent / "heal_round3.json"


def _set_lr(opt, lr):
    for g in opt.param_groups:
        g["lr"] = lr


def run(task, mult: float, seed: int, lost: int, warmup: int = 50, every: int = 1, keep: int = 99
        ) -> dict[str, float]:
    data = task.data()
    torch.manual_seed(seed)
    model = task.model()
    opt = task.optimizer(list(model.parameters()), TUNED[task.name] * mult)
    total = task.epochs * task.steps_per_epoch(data)
    stream = (b for e in range(task.epochs) for b in task.batches(data, e, seed))
    for _ in range(lost):
        next(stream)
    init = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))
    divisor = 3.0 if direct_steps(opt) else 10.0
    probe = LRProbe(TUNED[task.name] * mult, valley_divisor=divisor)
    states, t = [], lost
    while True:
        xb, yb = next(stream)
        t += 1
        loss = task.loss_fn(model(xb), yb)
        states.append((probe.rate(len(probe.lrs)), copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())))
        answer = probe.observe(float(loss.detach()))
        if not hasattr(answer, "lr"):
            break
        opt.zero_grad()
        loss.backward()
        _set_lr(opt, answer.lr)
        opt.step()
    choice = answer.choice
    rest = list(stream)
    out = {"lr": choice.lr / TUNED[task.name], "rule": choice.rule, "probe_steps": len(probe.lrs)}
    if every > 1:  # the engine's copies: every `every`-th probe step, the `keep` latest
        states = [s for i, s in enumerate(states) if i % every == 0][-keep:]
    at = [s for s in states if s[0] <= choice.lr * (1 + 1e-9)]
    for variant in ("restore", "rewind"):
        if variant == "restore":
            model.load_state_dict(init[0]), opt.load_state_dict(init[1])
            ramp = warmup
        else:
            if not at:
                out[variant] = out["restore"]
                continue
            model.load_state_dict(at[-1][1]), opt.load_state_dict(at[-1][2])
            ramp = 0
        for k, (xb, yb) in enumerate(rest):
            _set_lr(opt, choice.lr * min(1.0, (k + 1) / ramp) if ramp else choice.lr)
            loss = task.loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        out[variant] = task.evaluate(model, data)
    out["steps"] = total
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tasks", nargs="+")
    ap.add_argument("--mults", type=float, nargs="+", default=[10.0, 30.0, 100.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--lost", type=int, default=10, help="batches a detection used before the rollback")
    ap.add_argument("--every", type=int, default=1, help="copies at every N-th probe step only")
    ap.add_argument("--keep", type=int, default=99, help="the N latest copies only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tuned = {(t["task"], r["seed"]): r["tuned_val"] for t in json.loads(ROUND3.read_text())["tasks"]
             for r in t["rows"]}
    for task in [t for t in TASKS if t.name in args.tasks]:
        for mult in args.mults:
            for seed in args.seeds:
                r = run(task, mult, seed, args.lost, every=args.every, keep=args.keep)
                ref = tuned[(task.name, seed)]
                print(f"{task.name:34s} x{mult:<4g} s{seed}  rule {r['rule']:11s} lr {r['lr']:.2f}x tuned  "
                      f"restore {r['restore'] / ref:.2f}  rewind {r['rewind'] / ref:.2f}", flush=True)


if __name__ == "__main__":
    main()
