"""Per-step overhead of `trainmedic run` (watch mode) against the same plain loop, interleaved in one process.

The workload is the small CNN of ``benchmarks/overhead.py`` (>= 20 ms per step on one CPU thread). The "run"
variant is the plain loop (``optimizer.zero_grad(); loss.backward(); optimizer.step()``) executed while the
instrumentation of ``trainmedic run`` is installed -- the same :class:`~trainmedic.instrument.Session` that
``trainmedic run`` installs around a script: global optimizer-step hooks, the wrapped ``Tensor.backward`` and
``F`` losses, the Medic engine on every step, sampled activations. Rounds alternate the two variants (order
shuffled; many short blocks) on the same model and optimizer; the figure quoted is the ratio of the
medians of the per-block times per step, in wall time and in CPU time. The one-time cost (install + the first step, which finds the model) is reported
separately.

    .venv/bin/python benchmarks/run_overhead.py            # ~1 minute
    .venv/bin/python benchmarks/run_overhead.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import small_cnn  # noqa: E402

from trainmedic.instrument import Session  # noqa: E402

GOAL = 1.05


def make_loop(seed: int = 0):
    torch.manual_seed(seed)
    model, (x, y), loss_fn = small_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:  # the script's own code: nothing of trainmedic in it
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def time_steps(step, steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per step. With one thread, CPU time is what the loop itself consumed, so it
    stays meaningful on a machine shared with other work; wall time is the figure on a quiet machine."""
    step()  # warm
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, default=41)
    p.add_argument("--out", default="benchmarks/results/run_overhead.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    rounds = 5 if args.quick else args.rounds
    # One model and optimizer for both variants: separate instances differ in speed by more than the
    # overhead being measured (memory layout); the engine simply does not see the plain blocks' steps.
    plain = under_run = make_loop()
    session = Session("watch", console=False)

    t0 = time.perf_counter()
    session.install()
    under_run()  # first step: model discovery, engine construction
    session.uninstall()
    one_time = time.perf_counter() - t0

    probe = time_steps(plain, 3)[0]
    steps = max(2, int((0.25 if args.quick else 0.5) / probe))
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "run": []}
    for _ in range(rounds):  # short blocks, many rounds: both variants see the same machine
        order = ["plain", "run"]
        random.shuffle(order)
        for v in order:
            if v == "run":
                session.install()  # not timed: `run` installs once per script
                try:
                    times[v].append(time_steps(under_run, steps))
                finally:
                    session.uninstall()
            else:
                times[v].append(time_steps(plain, steps))
    wall = {v: statistics.median(t[0] for t in ts) for v, ts in times.items()}
    cpu = {v: statistics.median(t[1] for t in ts) for v, ts in times.items()}
    ratio, cpu_ratio = wall["run"] / wall["plain"], cpu["run"] / cpu["plain"]
    eng = session.drivers[0]
    result = {
        "workload": "small_cnn (benchmarks/overhead.py), Adam, batch 64x3x32x32, 1 thread",
        "ms_per_step": {v: 1e3 * t for v, t in wall.items()},
        "cpu_ms_per_step": {v: 1e3 * t for v, t in cpu.items()},
        "ratio_run_to_plain": ratio,
        "cpu_ratio_run_to_plain": cpu_ratio,
        "per_round_ratio": [r[0] / p[0] for r, p in zip(times["run"], times["plain"])],
        "per_round_cpu_ratio": [r[1] / p[1] for r, p in zip(times["run"], times["plain"])],
        "one_time_s": one_time,
        "steps_per_round": steps, "rounds": rounds, "goal": GOAL, "met": max(ratio, cpu_ratio) <= GOAL,
        "engine_steps": eng.step_count, "findings": [f.code for f in eng.findings],
        "torch": torch.__version__, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
    }
    print(f"plain {1e3 * wall['plain']:.2f} ms/step, run (watch) {1e3 * wall['run']:.2f} ms/step: wall {ratio:.3f}x, "
          f"CPU time {cpu_ratio:.3f}x (goal <= {GOAL}x, {'met' if result['met'] else 'NOT met'}); "
          f"one-time {one_time * 1e3:.0f} ms; load average {os.getloadavg()[0]:.1f}; findings {result['findings']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
