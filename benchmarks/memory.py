"""The Medic's own memory over a long run stays flat: tracemalloc across 200,000 steps of a trivial model.

    .venv/bin/python benchmarks/memory.py [--steps 200000]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from pathlib import Path

import torch

from trainmedic import Medic


def run(steps: int, report_every: int) -> list[tuple[int, int]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    medic = Medic(model, opt, mode="heal", console=False)
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    tracemalloc.start()
    points = []
    for t in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        medic.step(loss)
        if t % 1000 == 999:
            medic.end_epoch(val_loss=loss.item())
        if (t + 1) % report_every == 0:
            gc.collect()  # measure what is retained, not the interpreter's free lists
            points.append((t + 1, tracemalloc.get_traced_memory()[0]))
    tracemalloc.stop()
    return points


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--out", default="benchmarks/results/memory.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    points = run(args.steps, args.steps // 10)
    for step, mem in points:
        print(f"step {step:>8}: {mem / 1024:8.1f} KiB traced")
    growth = points[-1][1] - points[1][1]
    print(f"growth from step {points[1][0]} to {points[-1][0]}: {growth / 1024:.1f} KiB "
          f"({time.perf_counter() - t0:.0f} s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"points": points, "growth_bytes": growth}, indent=2))


if __name__ == "__main__":
    main()
