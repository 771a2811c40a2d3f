"""Every pathology of the zoo under watch and heal, over several seeds.

For each fault: detected or not, the step of the first expected finding, the heal run's final metric
against the healthy baseline (same script without the fault, same seed). For the healthy controls and
every fault script run without its fault: false findings (warning or error). Prints a table, writes JSON.

    .venv/bin/python benchmarks/zoo.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from trainmedic.zoo import CASES
from trainmedic.zoo.evaluate import evaluate


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/zoo.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = [evaluate(case, seed) for case in CASES for seed in range(args.seeds)]
    print(f"{'case':<22} {'detected':>9} {'first step':>12} {'heal/healthy':>13} {'false alarms':>13}  heal actions")
    summary = {"faults": 0, "detected": 0, "healable": 0, "recovered": 0, "healthy_runs": 0, "false_alarm_runs": 0}
    for case in CASES:
        mine = [r for r in rows if r["case"] == case.module]
        fa = sum(bool(r["false_alarms"]) for r in mine)
        summary["healthy_runs"] += len(mine) * (2 if case.control else 1)
        summary["false_alarm_runs"] += fa
        if case.control:
            print(f"{case.module:<22} {'-':>9} {'-':>12} {'-':>13} {fa:>13}")
            continue
        det = sum(r["detected"] for r in mine)
        summary["faults"] += len(mine)
        summary["detected"] += det
        steps = "/".join(str(r["first_step"]) for r in mine)
        ratios = [r["heal_metric"] / r["healthy_metric"] for r in mine]
        ratio_s = "/".join(f"{x:.2f}" if math.isfinite(x) else "nan" for x in ratios)
        if case.healable:
            summary["healable"] += len(mine)
            summary["recovered"] += sum(1 for x in ratios if x <= 1.10)
        actions = ", ".join(f"{k}x{v}" for k, v in mine[0]["actions"].items())
        print(f"{case.module:<22} {det}/{len(mine):>7} {steps:>12} {ratio_s:>13}{'*' if case.healable else ' '}"
              f"{fa:>12}  {actions}")
    print("* heal is expected to end within 10 % of the healthy baseline (lower is better)")
    print(f"detected {summary['detected']}/{summary['faults']} fault runs; heal recovered "
          f"{summary['recovered']}/{summary['healable']} healable runs; false alarms on "
          f"{summary['false_alarm_runs']}/{summary['healthy_runs']} healthy runs")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2, default=str))
    print(f"written {out}")


if __name__ == "__main__":
    main()
