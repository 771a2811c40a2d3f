"""Offline evidence (issue 12, round five): how to continue after a probe from the first steps.

After a rollback to the initial weights the probe (``trainmedic.heal.lr_probe.LRProbe``) reads a rate from
36 steps of the run's own batches; heal then continues from the initial weights with a linear warmup of
``heal_warmup_steps`` (50) to the chosen rate, or, for plain SGD, from the probe's ramp at the chosen rate
(``probe_rewind_every``). On a short run (digits-cnn: 320 steps) detection, probe and warmup are a third of
it. This script replays exactly that, from the same probe, for several ways to continue, on more seeds than
``benchmarks/heal.py`` uses, and judges each by the final validation loss over the tuned constant-rate run
of the same seed (computed here, so any seed works):

* ``now``: today's engine (plain SGD: the ramp copy, every 3rd probe step, 8 kept; else restore + warmup 50);
* ``wN``: restore, a linear warmup of N steps (``N=m``: 2/(1 - momentum), the steps SGD momentum's buffer
  takes to follow a rate change; not for plain SGD, whose ramp copy needs no warmup);
* ``rw``: the ramp copy for any optimizer (its state, momentum or moments, copied with the weights);
* ``tuned`` / ``tuned-w``: restore, continue at the tuned rate itself (no warmup / a warmup of 50): what
  the best possible rule could reach after the same lost steps and probe;
* ``xF``: ``now`` at F times the probe's rate (for a ``minimum/`` or ``rise/`` choice; at most the
  probe's cap, the failing rate / 3).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/heal_continue.py digits-cnn-sgdm --seeds 0 1 2 3 4 5 6 7
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
from heal_tasks import TASKS

from trainmedic.config import Thresholds
from trainmedic.heal.lr_probe import LRProbe, ProbeDone
from trainmedic.heal.steering import Steering
from trainmedic.signals.stepping import direct_steps

TUNED = {"regression-mlp-sgd": 0.1, "classify-mlp-adam": 0.001, "digits-cnn-sgdm": 0.0316, "charlm-gru-adamw": 0.01,
         "held-out: autoencoder-rmsprop": 0.00316, "held-out: charlm-transformer-adam": 0.01}
EVERY, KEEP = 3, 8  # the engine's probe_rewind_every / probe_rewind_keep


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def _train(task, model, opt, batches, lr_at) -> None:
    for k, (xb, yb) in enumerate(batches):
        _set_lr(opt, lr_at(k))
        loss = task.loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()


def tuned_final(task, seed: int) -> float:
    data = task.data()
    torch.manual_seed(seed)
    model = task.model()
    opt = task.optimizer(list(model.parameters()), TUNED[task.name])
    _train(task, model, opt, [b for e in range(task.epochs) for b in task.batches(data, e, seed)],
           lambda k: TUNED[task.name])
    return task.evaluate(model, data)


def momentum_of(opt: torch.optim.Optimizer) -> float:
    g = opt.param_groups[0]
    return float(g.get("momentum", 0.0) or (g.get("betas") or (0.0,))[0])


def run(task, mult: float, seed: int, lost: int, variants: list[str]) -> dict:
    data = task.data()
    torch.manual_seed(seed)
    model = task.model()
    opt = task.optimizer(list(model.parameters()), TUNED[task.name] * mult)
    stream = (b for e in range(task.epochs) for b in task.batches(data, e, seed))
    for _ in range(lost):
        next(stream)
    init = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))
    direct = direct_steps(opt)
    ceiling = TUNED[task.name] * mult
    probe = LRProbe(ceiling, valley_divisor=Steering(Thresholds(), direct_steps=direct).valley_divisor)  # the engine's
    ramp: list[tuple[float, dict, dict]] = []
    while True:
        xb, yb = next(stream)
        i = len(probe.lrs)
        loss = task.loss_fn(model(xb), yb)
        answer = probe.observe(float(loss.detach()))
        if isinstance(answer, ProbeDone):
            break
        if (direct or "rw" in variants) and i > 0 and i % EVERY == 0:
            ramp = [*ramp, (answer.lr, copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))][-KEEP:]
        opt.zero_grad()
        loss.backward()
        _set_lr(opt, answer.lr)
        opt.step()
    choice = answer.choice
    rest = list(stream)
    m = momentum_of(opt)
    out = {"rule": choice.rule, "lr": choice.lr / TUNED[task.name], "z": choice.evidence.get("valley_z", 0.0) or 0.0,
           "min": (choice.evidence.get("lr_min_loss") or 0.0) / TUNED[task.name],
           "rise": (choice.evidence.get("lr_rise") or 0.0) / TUNED[task.name]}
    for variant in variants:
        lr, warm = choice.lr, 50
        if variant.startswith("x") and choice.rule.startswith(("minimum/", "rise/")):
            lr = min(choice.lr * float(variant[1:]), ceiling / 3)
        if variant in ("tuned", "tuned-w"):  # the bound on any rule: the tuned rate itself, restored
            lr, warm = TUNED[task.name], (50 if variant == "tuned-w" else 0)
        if variant.startswith("w"):
            if direct:
                continue
            warm = round(2 / (1 - m)) if variant == "wm" else int(variant[1:])
        at = [s for s in ramp if s[0] <= lr * (1 + 1e-9)] if choice.rule not in ("known-good", "no-evidence") else []
        if at and (direct or variant == "rw") and not variant.startswith(("w", "tuned")):
            model.load_state_dict(at[-1][1]), opt.load_state_dict(at[-1][2])
            warm = 0
        else:
            model.load_state_dict(init[0]), opt.load_state_dict(init[1])
        _train(task, model, opt, rest, lambda k, lr=lr, warm=warm: lr * min(1.0, (k + 1) / warm) if warm else lr)
        out[variant] = task.evaluate(model, data)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tasks", nargs="+")
    ap.add_argument("--mults", type=float, nargs="+", default=[10.0, 30.0, 100.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--lost", type=int, default=30, help="batches a detection used before the rollback")
    ap.add_argument("--variants", nargs="+", default=["now", "w20", "wm", "x1.5", "x2", "x3"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    for task in [t for t in TASKS if t.name in args.tasks]:
        ratios: dict[str, list[float]] = {}
        for seed in args.seeds:
            ref = tuned_final(task, seed)
            for mult in args.mults:
                r = run(task, mult, seed, args.lost, args.variants)
                cells = []
                for v in args.variants:
                    if v in r:
                        ratios.setdefault(v, []).append(r[v] / ref)
                        cells.append(f"{v} {r[v] / ref:.2f}")
                print(f"{task.name:28s} x{mult:<4g} s{seed}  {r['rule']:11s} lr {r['lr']:.2f}x (min {r['min']:.2f}x, "
                      f"dip {r['z']:.1f} se, rise {r['rise']:.2f}x)  " + "  ".join(cells),
                      flush=True)
        print(f"{task.name}: lost {args.lost}, {len(args.seeds)} seeds x {len(args.mults)} starts; "
              "within 1.1x / median / worst:")
        for v, xs in ratios.items():
            print(f"  {v:6s} {sum(x <= 1.1 for x in xs)}/{len(xs)}  {statistics.median(xs):.3f}  {max(xs):.2f}")


if __name__ == "__main__":
    main()
