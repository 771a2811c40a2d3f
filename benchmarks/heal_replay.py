"""Offline evidence (issue 12, probe replay): which rate to continue at after a plain-SGD probe.

After a rollback heal's probe (``trainmedic.heal.lr_probe.LRProbe``) reads one rate from its curve. For
plain SGD, ``trainmedic.heal.probe_replay`` then replays a few candidate rates on copies from the snapshot,
over the batches the probe saw, and keeps the best by loss. This script reproduces that offline on the
regression task (any seed), for several candidate sets and scorings, and judges each by the final validation
loss of the continued run over the tuned constant-rate run of the same seed:

* ``probe``: the probe's own rate (today without replay);
* ``<score>-<tie>``: the supported rate (``minimum/2``'s, or ``rise/3`` where the probe read ``rise/10``) x
  ``FACTORS``, each replayed at a constant rate from the snapshot over the probe's batches; ``score`` is
  ``end`` (the copy's mean loss on all those batches after the replay) or ``prog`` (the mean loss of the
  last half of the replay's own steps, each batch seen before its step); within ``TOL`` of the best, ties go
  to the ``lo``wer or ``hi``gher rate.

The continuation is the engine's: from the latest ramp copy at or below the rate (the first copy and the 7
latest kept), else the snapshot with a warmup of 50 steps.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/heal_replay.py --seeds 0 1 2 3 4 5 6 7
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
from heal_continue import TUNED, _set_lr, _train, tuned_final
from heal_tasks import TASKS

from trainmedic.heal.lr_probe import LRProbe, ProbeDone

EVERY, KEEP = 3, 8
TOL = 0.02
RISE_DIV = 3.0  # steering.REPLAY_RISE_DIVISOR (2: the valley's divisor, measured too)


def replay(task, state, batches, lr):
    model = task.model()
    model.load_state_dict(state)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    prog = []
    for xb, yb in batches:
        loss = task.loss_fn(model(xb), yb)
        prog.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = statistics.fmean(float(task.loss_fn(model(xb), yb)) for xb, yb in batches)
    half = prog[len(prog) // 2:]
    p = statistics.fmean(half) if all(map(lambda v: v == v and v < float("inf"), half)) else float("inf")
    return {"end": end if end == end else float("inf"), "prog": p}


def run(task, mult, seed, lost, factors):
    data = task.data()
    torch.manual_seed(seed)
    model = task.model()
    opt = task.optimizer(list(model.parameters()), TUNED[task.name] * mult)
    stream = (b for e in range(task.epochs) for b in task.batches(data, e, seed))
    for _ in range(lost):
        next(stream)
    init = copy.deepcopy(model.state_dict())
    ceiling = TUNED[task.name] * mult
    probe = LRProbe(ceiling, valley_divisor=2.0)
    ramp, seen = [], []
    while True:
        xb, yb = next(stream)
        seen.append((xb, yb))
        i = len(probe.lrs)
        loss = task.loss_fn(model(xb), yb)
        answer = probe.observe(float(loss.detach()))
        if isinstance(answer, ProbeDone):
            break
        if i > 0 and i % EVERY == 0:
            ramp = [*ramp, (answer.lr, copy.deepcopy(model.state_dict()))]
            if len(ramp) > KEEP:
                ramp = [ramp[0], *ramp[-(KEEP - 1):]]
        opt.zero_grad()
        loss.backward()
        _set_lr(opt, answer.lr)
        opt.step()
    choice = answer.choice
    rest = list(stream)
    if choice.rule == "minimum/2":
        base = choice.lr
    elif choice.rule == "rise/10":
        base = min(choice.evidence["lr_rise"] / RISE_DIV, ceiling / 3)
    else:
        base = None

    def cont(lr):
        at = [s for s in ramp if s[0] <= lr * (1 + 1e-9)]
        warm = 0
        if at:
            model.load_state_dict(at[-1][1])
        else:
            model.load_state_dict(init)
            warm = 50
        o = torch.optim.SGD(model.parameters(), lr=lr)
        _train(task, model, o, rest, lambda k: lr * min(1.0, (k + 1) / warm) if warm else lr)
        return task.evaluate(model, data)

    out = {"rule": choice.rule, "lr": choice.lr, "probe": cont(choice.lr), "cands": {}}
    if base is None:
        return out
    cands = [base * f for f in factors]
    scores = [replay(task, init, seen, c) for c in cands]
    finals = {c: cont(c) for c in cands}
    out["cands"] = {c: (s, finals[c]) for c, s in zip(cands, scores)}
    for score in ("end", "prog"):
        vals = [s[score] for s in scores]
        best = min(vals)
        for tie in ("lo", "hi"):
            ok = [i for i, v in enumerate(vals) if v <= best * (1 + TOL)]
            i = max(ok) if tie == "lo" else min(ok)  # cands run from high to low
            out[f"{score}-{tie}"] = finals[cands[i]]
    return out


def main() -> None:
    global TOL
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mults", type=float, nargs="+", default=[10.0, 30.0, 100.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--lost", type=int, default=3)
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    ap.add_argument("--tol", type=float, default=0.02)
    args = ap.parse_args()
    TOL = args.tol
    torch.set_num_threads(1)
    task = next(t for t in TASKS if t.name == "regression-mlp-sgd")
    keys = ["probe", "end-lo", "end-hi", "prog-lo", "prog-hi"]
    ratios: dict[str, list[float]] = {k: [] for k in keys}
    for seed in args.seeds:
        ref = tuned_final(task, seed)
        for mult in args.mults:
            r = run(task, mult, seed, args.lost, args.factors)
            for k in keys:
                ratios[k].append(r.get(k, r["probe"]) / ref)
            cells = "  ".join(f"{k} {r.get(k, r['probe']) / ref:.3f}" for k in keys)
            cands = "  ".join(f"{c / TUNED[task.name]:.2f}x:e{s['end']:.4f}/p{s['prog']:.4f}->{f / ref:.3f}"
                              for c, (s, f) in r["cands"].items())
            print(f"x{mult:<4g} s{seed} {r['rule']:10s} lr {r['lr'] / TUNED[task.name]:.2f}x  {cells}  | {cands}", flush=True)
    print(f"factors {args.factors}, tolerance {TOL}: within 1.1x / median / worst")
    for k, xs in ratios.items():
        print(f"  {k:8s} {sum(x <= 1.1 for x in xs)}/{len(xs)}  {statistics.median(xs):.3f}  {max(xs):.3f}")


if __name__ == "__main__":
    main()
