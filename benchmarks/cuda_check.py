"""CUDA and AMP paths of the Medic, on a machine with a GPU (not part of CI, which has none).

Checks: (1) one device-to-host sync per step, counted with ``torch.cuda.set_sync_debug_mode``; (2) an
fp16 autocast + GradScaler run stays silent, and an injected overflow storm is reported as TM314; (3) a
NaN step on CUDA is skipped in heal mode; (4) bf16 autocast; (5) per-step overhead of watch/heal on a
GPU CNN, interleaved against the plain loop.

    python benchmarks/cuda_check.py
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from trainmedic import Medic


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(128, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(128, 10)).cuda()


def data(n=256):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g).cuda(), torch.randint(0, 10, (n,), generator=g).cuda()


def syncs_per_step() -> list[int]:
    torch.manual_seed(0)
    model, (x, y) = cnn(), data(64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    medic = Medic(model, opt, mode="heal", console=False)
    counts = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            medic.step(loss)
            torch.cuda.set_sync_debug_mode(0)
        counts.append(sum("synchroniz" in str(m.message) for m in w))
    return counts


def amp_run(storm: bool, dtype=torch.float16):
    torch.manual_seed(0)
    model, (x, y) = cnn(), data(64)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    medic = Medic(model, opt, scaler=scaler, mode="heal", console=False)
    for t in range(120):
        with torch.autocast("cuda", dtype=dtype):
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        (scaler.scale(loss) if scaler else loss).backward()
        if storm and 40 <= t < 70:
            model[0].weight.grad.view(-1)[0] = float("inf")
        medic.step(loss)
    return [(f.code, f.step) for f in medic.findings], float(loss)


def nan_skip():
    torch.manual_seed(0)
    model, (x, y) = cnn(), data(64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    medic = Medic(model, opt, mode="heal", console=False)
    before = None
    for t in range(10):
        loss = nn.functional.cross_entropy(model(x), y)
        if t == 5:
            loss = loss * float("nan")
            before = [p.detach().clone() for p in model.parameters()]
        opt.zero_grad()
        loss.backward()
        applied = medic.step(loss)
        if t == 5:
            same = all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
            return applied, same, [(f.code, f.step) for f in medic.findings]


def overhead(rounds=7, steps=100):
    variants = ["plain", "watch", "heal"]
    runners = {}
    for v in variants:
        torch.manual_seed(0)
        model, (x, y) = cnn(), data(128)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        medic = Medic(model, opt, mode=v, console=False) if v != "plain" else None

        def step(model=model, x=x, y=y, opt=opt, medic=medic):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            if medic:
                medic.step(loss)
            else:
                opt.step()
                loss.item()  # a plain loop that logs its loss syncs once per step too
        runners[v] = step
    times = {v: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            for _ in range(5):
                runners[v]()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                runners[v]()
            torch.cuda.synchronize()
            times[v].append((time.perf_counter() - t0) / steps)
    med = {v: statistics.median(t) for v, t in times.items()}
    return {v: {"ms": 1e3 * med[v], "ratio": med[v] / med["plain"]} for v in variants}


def main() -> None:
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    out["syncs_per_step"] = syncs_per_step()
    out["fp16_gradscaler_healthy"] = amp_run(storm=False)
    out["fp16_gradscaler_overflow_storm"] = amp_run(storm=True)
    out["bf16_healthy"] = amp_run(storm=False, dtype=torch.bfloat16)
    out["nan_step_skipped"] = nan_skip()
    out["overhead_cnn_gpu"] = overhead()
    print(json.dumps(out, indent=2))
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/cuda_check.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
