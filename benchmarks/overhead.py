"""Per-step overhead of trainmedic against the plain loop, interleaved in one process.

Variants: plain PyTorch; the hand-written guard (isfinite check + clip_grad_norm_); Medic watch; Medic heal;
PyTorch Lightning with equivalent guards (gradient clipping + a NaN check) when lightning is installed.
Rounds interleave the variants in a shuffled order so drift in machine load hits all of them alike; the
figure quoted is the median time per step over rounds, as a ratio to plain.

    .venv/bin/python benchmarks/overhead.py            # full run (a few minutes)
    .venv/bin/python benchmarks/overhead.py --quick    # smoke run
    .venv/bin/python benchmarks/overhead.py --clock cpu   # on a loaded machine: the thread's CPU time

``--clock cpu`` times with ``time.thread_time()``: torch runs on this one thread (``set_num_threads(1)``), so
the CPU time of the step is what it costs, and time spent waiting for a core taken by another process is
not counted. Wall time stays the default: on an idle machine it is what a user feels.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from trainmedic import Medic


def tiny_mlp():
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))
    x, y = torch.randn(256, 64), torch.randn(256, 1)
    return model, (x, y), nn.functional.mse_loss


def tabular_mlp():
    # A house-price-sized tabular net: 300 one-hot/scaled inputs, two hidden layers, dropout.
    model = nn.Sequential(nn.Linear(300, 512), nn.ReLU(), nn.Dropout(0.1), nn.Linear(512, 256), nn.ReLU(),
                          nn.Linear(256, 1))
    x, y = torch.randn(512, 300), torch.randn(512, 1)
    return model, (x, y), nn.functional.mse_loss


def small_cnn():
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, 10))
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    return model, (x, y), nn.functional.cross_entropy


WORKLOADS = {"tiny_mlp": tiny_mlp, "tabular_mlp": tabular_mlp, "small_cnn": small_cnn}


def make_runner(variant: str, workload):
    torch.manual_seed(0)
    model, (x, y), loss_fn = workload()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    if variant == "plain":
        def step():
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    elif variant == "guard":
        def step():
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            if torch.isfinite(loss):  # the usual hand-written guard: one sync for the check ...
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # ... and the norm
                opt.step()
    elif variant in ("watch", "heal"):
        medic = Medic(model, opt, mode=variant, console=False)

        def step():
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
    elif variant == "lightning":
        return make_lightning_runner(model, x, y, loss_fn)
    else:
        raise ValueError(variant)
    return step


def make_lightning_runner(model, x, y, loss_fn):
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model

        def training_step(self, batch, _i):
            loss = loss_fn(self.net(batch[0]), batch[1])
            if not torch.isfinite(loss):
                return None  # Lightning skips the step when training_step returns None
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-4)

    module = Module()

    def run(steps: int) -> None:
        data = [(x, y)] * steps
        trainer = L.Trainer(max_epochs=1, gradient_clip_val=1.0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))

    run.is_loop = True  # type: ignore[attr-defined]
    return run


CLOCK = time.perf_counter


def time_steps(runner, steps: int) -> float:
    if getattr(runner, "is_loop", False):
        runner(2)  # warm
        t0 = CLOCK()
        runner(steps)
        return (CLOCK() - t0) / steps
    for _ in range(3):
        runner()
    t0 = CLOCK()
    for _ in range(steps):
        runner()
    return (CLOCK() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", default="benchmarks/results/overhead.json")
    p.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: perf_counter (default); cpu: the thread's CPU time, for a loaded machine")
    p.add_argument("--seconds", type=float, default=1.5, help="time per variant per round")
    p.add_argument("--variants", nargs="*", help="default: plain guard watch heal (+ lightning)")
    args = p.parse_args()
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(1)
    variants = ["plain", "guard", "watch", "heal"]
    try:
        import lightning  # noqa: F401

        variants.append("lightning")
    except ImportError:
        print("(lightning not installed: its column is skipped)")
    if args.variants:
        variants = ["plain"] + [v for v in args.variants if v != "plain"]
    rounds = 2 if args.quick else args.rounds
    results = {}
    for name in args.workloads:
        workload = WORKLOADS[name]
        runners = {v: make_runner(v, workload) for v in variants}
        probe = time_steps(runners["plain"], 5)
        steps = max(10, int((0.3 if args.quick else args.seconds) / probe))  # seconds per variant per round
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(rounds):
            order = variants[:]
            random.shuffle(order)
            for v in order:
                times[v].append(time_steps(runners[v], steps))
        med = {v: statistics.median(ts) for v, ts in times.items()}
        results[name] = {"ms_per_step": {v: 1e3 * t for v, t in med.items()},
                         "ratio_to_plain": {v: med[v] / med["plain"] for v in variants},
                         "steps_per_round": steps, "rounds": rounds, "clock": args.clock}
    header = f"{'workload':<12} {'plain ms':>9} " + " ".join(f"{v:>10}" for v in variants[1:])
    print(header)
    for name, r in results.items():
        print(f"{name:<12} {r['ms_per_step']['plain']:>9.2f} "
              + " ".join(f"{r['ratio_to_plain'][v]:>9.3f}x" for v in variants[1:]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
