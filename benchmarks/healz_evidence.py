"""Candidate evidence for "a rate too high that still learns" (issue 12, round five, branch ``healz``).

Plain runs of ``heal_tasks.py`` at multiples of the tuned rate; per epoch, the mean over its steps of

* ``uu``: cos(update_t, update_{t-1}) (the applied weight change, all parameters as one vector);
* ``gg``: cos(grad_t, grad_{t-1});
* ``gu``: cos(grad_t, update_{t-1}): > 0 when the new gradient points back along the last update (the step
  overshot; the sign of the hypergradient d loss_t / d lr);
* ``dd``: cos(w_t - w_{t-K}, w_{t-K} - w_{t-2K}) over consecutive K=10-step displacements;
* ``eff``: path efficiency over 20 steps, |w_t - w_{t-20}| / sum |update|.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/healz_evidence.py --tasks classify-mlp-adam
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from heal_evidence import TUNED
from heal_tasks import TASKS


def _flat(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else float("nan")


def measure(task, mult: float, seed: int, epochs: int, k: int = 10) -> dict[str, list[float]]:
    data = task.data()
    torch.manual_seed(seed)
    model = task.model()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = task.optimizer(params, TUNED[task.name] * mult)
    out: dict[str, list[float]] = {n: [] for n in ("uu", "gg", "gu", "dd", "eff", "val")}
    prev_u = prev_g = None
    hist: list[torch.Tensor] = []  # weights every step (flattened), the last 2k+1
    norms: list[float] = []
    for epoch in range(epochs):
        acc: dict[str, list[float]] = {n: [] for n in ("uu", "gg", "gu", "dd", "eff")}
        for xb, yb in task.batches(data, epoch, seed):
            loss = task.loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            g = _flat([p.grad for p in params]).clone()
            w0 = _flat([p.detach() for p in params]).clone()
            opt.step()
            w1 = _flat([p.detach() for p in params])
            u = w1 - w0
            if prev_u is not None:
                acc["uu"].append(_cos(u, prev_u))
                acc["gg"].append(_cos(g, prev_g))
                acc["gu"].append(_cos(g, prev_u))
            prev_u, prev_g = u, g
            hist.append(w1.clone())
            norms.append(float(u.norm()))
            hist, norms = hist[-(2 * k + 1):], norms[-(2 * k):]
            if len(hist) == 2 * k + 1:
                acc["dd"].append(_cos(hist[-1] - hist[-1 - k], hist[-1 - k] - hist[0]))
                acc["eff"].append(float((hist[-1] - hist[0]).norm()) / max(sum(norms), 1e-30))
        for n, v in acc.items():
            out[n].append(float(np.nanmean(v)) if v else float("nan"))
        out["val"].append(task.evaluate(model, data))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="+", default=[t.name for t in TASKS])
    ap.add_argument("--mults", nargs="+", type=float, default=[1 / 3, 1, 3, 10, 30])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    rows = []
    for task in (t for t in TASKS if t.name in a.tasks):
        for mult in a.mults:
            for seed in a.seeds:
                r = measure(task, mult, seed, a.epochs)
                rows.append({"task": task.name, "mult": mult, "seed": seed, **r})
                print(f"{task.name[:22]:<22} x{mult:<6.3g} s{seed} " + "  ".join(
                    f"{n} " + " ".join(f"{x:+.3f}" for x in r[n]) for n in ("uu", "gg", "gu", "dd", "eff", "val")),
                    flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f)




# ------------------------------------------------------------------------------------------------
# the audit on copies: from the current weights, replay recent batches at lr, lr/3, lr/10
# ------------------------------------------------------------------------------------------------
def _train_epoch(task, model, opt, data, epoch: int, seed: int, keep: int) -> list:
    """One epoch of the plain loop; returns its last ``keep`` batches (what the audit replays)."""
    recent: list = []
    for xb, yb in task.batches(data, epoch, seed):
        loss = task.loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        recent = [*recent, (xb, yb)][-keep:]
    return recent


def audit(task, mult: float, seed: int, epochs: int, train_n: int = 8, held_n: int = 4, passes: int = 2,
          factors: tuple[float, ...] = (1.0, 1 / 3, 1 / 10)) -> dict[str, list]:
    data = task.data()
    torch.manual_seed(seed)
    model = task.model()
    opt = task.optimizer(list(model.parameters()), TUNED[task.name] * mult)
    out: dict[str, list] = {"ratios": [], "held_sd": [], "val": []}
    for epoch in range(epochs):
        recent = _train_epoch(task, model, opt, data, epoch, seed, train_n + held_n)
        out["val"].append(task.evaluate(model, data))
        ratios, base = _audit_once(task, model, opt, recent[:train_n], recent[train_n:], passes, factors)
        out["ratios"].append(ratios)
        out["held_sd"].append(float(np.std(base) / np.mean(base)))
    return out


def _audit_once(task, model, opt, train_b, held_b, passes, factors):
    """Held-batch losses after ``passes`` over ``train_b`` on copies at lr x each factor; the ratios of the
    lower factors' mean held loss to the first factor's, and the first factor's held losses."""
    import copy

    rng = torch.get_rng_state()
    losses = []
    for f in factors:
        torch.set_rng_state(rng)
        m2 = copy.deepcopy(model)
        o2 = task.optimizer(list(m2.parameters()), 1.0)
        o2.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict keeps the tensors
        for g in o2.param_groups:
            g["lr"] *= f
        for _ in range(passes):
            for xb, yb in train_b:
                loss = task.loss_fn(m2(xb), yb)
                o2.zero_grad()
                loss.backward()
                o2.step()
        with torch.no_grad():
            losses.append([float(task.loss_fn(m2(xb), yb)) for xb, yb in held_b])
    torch.set_rng_state(rng)
    base = np.array(losses[0])
    return [float(np.mean(h) / np.mean(base)) for h in losses[1:]], base


def simulate(task, mult: float, seed: int, threshold: float, max_cuts: int = 3, train_n: int = 16,
             held_n: int = 8, passes: int = 2, factors=(1.0, 1 / 3, 1 / 10), choice: str = "audit") -> dict:
    """The audit as heal would use it: at the first evaluation, and at the next one after each cut; a cut
    to the best factor when its held loss is below ``threshold`` x the current rate's."""
    data = task.data()
    torch.manual_seed(seed)
    model = task.model()
    opt = task.optimizer(list(model.parameters()), TUNED[task.name] * mult)
    due, cuts, log, vals = True, 0, [], []
    for epoch in range(task.epochs):
        recent = _train_epoch(task, model, opt, data, epoch, seed, train_n + held_n)
        vals.append(task.evaluate(model, data))
        if due and cuts < max_cuts and all(np.isfinite(vals)):
            ratios, _ = _audit_once(task, model, opt, recent[:train_n], recent[train_n:], passes, factors)
            best = int(np.argmin(ratios))
            due = ratios[best] < threshold
            best = max(i for i, r in enumerate(ratios) if r <= ratios[best] * (2 - threshold))  # ties: the lower rate
            log.append((epoch, [round(r, 3) for r in ratios], due))
            if due:
                cuts += 1
                f = factors[best + 1] if choice == "audit" else _probe_factor(task, model, opt, recent)
                log.append(("cut", round(f, 4)))
                for g in opt.param_groups:
                    g["lr"] *= f
    return {"final": task.evaluate(model, data), "vals": vals, "log": log,
            "lr_end": opt.param_groups[0]["lr"] / TUNED[task.name]}


def _probe_factor(task, model, opt, batches) -> float:
    """heal's learning-rate probe (36 steps over 3 decades below the rate) run on a copy over ``batches``
    (cycled) from the current weights; the chosen rate over the current one."""
    import copy

    from trainmedic.heal.lr_probe import LRProbe, ProbeDone

    lr = opt.param_groups[0]["lr"]
    rng = torch.get_rng_state()
    m2 = copy.deepcopy(model)
    o2 = task.optimizer(list(m2.parameters()), lr)
    o2.load_state_dict(copy.deepcopy(opt.state_dict()))
    probe, i = LRProbe(lr), 0
    while True:
        xb, yb = batches[i % len(batches)]
        loss = task.loss_fn(m2(xb), yb)
        ans = probe.observe(float(loss))
        if isinstance(ans, ProbeDone):
            torch.set_rng_state(rng)
            return ans.choice.lr / lr
        for g in o2.param_groups:
            g["lr"] = ans.lr
        o2.zero_grad()
        loss.backward()
        o2.step()
        i += 1


def main_simulate() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("--tasks", nargs="+", default=[t.name for t in TASKS])
    ap.add_argument("--mults", nargs="+", type=float, default=[1, 10, 30])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    ap.add_argument("--threshold", type=float, default=0.955)
    ap.add_argument("--factors", nargs="+", type=float, default=[1 / 3, 1 / 10])
    ap.add_argument("--ref", default="heal_final4.json")
    ap.add_argument("--choice", default="audit", choices=["audit", "probe"])
    a = ap.parse_args()
    ref = json.load(open(a.ref))
    tuned = {(t["task"], r["seed"]): r["tuned_val"] for t in ref["tasks"] for r in t["rows"]}
    for task in (t for t in TASKS if t.name in a.tasks):
        for mult in a.mults:
            for seed in a.seeds:
                r = simulate(task, mult, seed, a.threshold, factors=(1.0, *a.factors), choice=a.choice)
                print(f"{task.name[:22]:<22} x{mult:<4g} s{seed} ratio {r['final'] / tuned[(task.name, seed)]:.3f} "
                      f"lr_end x{r['lr_end']:.3g} audits {r['log']}", flush=True)


def main_audit() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("--tasks", nargs="+", default=[t.name for t in TASKS])
    ap.add_argument("--mults", nargs="+", type=float, default=[1, 3, 10, 30])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--train-n", type=int, default=8)
    ap.add_argument("--held-n", type=int, default=4)
    ap.add_argument("--factors", nargs="+", type=float, default=[1 / 3, 1 / 10])
    a = ap.parse_args()
    for task in (t for t in TASKS if t.name in a.tasks):
        for mult in a.mults:
            for seed in a.seeds:
                r = audit(task, mult, seed, a.epochs, a.train_n, a.held_n, a.passes, (1.0, *a.factors))
                print(f"{task.name[:22]:<22} x{mult:<4g} s{seed} " + "  ".join(
                    f"e{e}: " + " ".join(f"x{f:.3g} {r:.3f}" for f, r in zip(a.factors, x)) + f" sd {sd:.3f} val {v:.3f}"
                    for e, (x, sd, v) in enumerate(zip(r["ratios"], r["held_sd"], r["val"]))), flush=True)


if __name__ == "__main__":
    import sys

    {"audit": main_audit, "simulate": main_simulate}.get(sys.argv[1] if len(sys.argv) > 1 else "", main)()
