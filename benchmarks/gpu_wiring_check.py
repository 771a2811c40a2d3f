"""Pre-flight, forensics and lr_find on a CUDA device: the paths a CPU run cannot exercise.

* a class index out of range is caught before ``cross_entropy`` runs (on a GPU it would be a device-side
  assert that poisons the CUDA context), and CUDA still works afterwards;
* pre-flight inside Medic leaves the CUDA RNG alone: a run with dropout is bit-identical with and without;
* bisection and quarantine of 3 NaN rows of 1000 with the data on the GPU;
* lr_find on a CUDA model leaves the model, the optimizer and both RNGs untouched.

    python benchmarks/gpu_wiring_check.py      (exits 0 when every check passes; prints what it saw)
"""

from __future__ import annotations

import copy
import sys
import time

import torch
from torch import nn

import trainmedic
from trainmedic import Medic
from trainmedic.heal.forensics import bisect_rows
from trainmedic.preflight import PreflightCallback


def mlp(d_in: int, d_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, d_out))


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device; nothing checked")
        return 0
    dev = torch.device("cuda")
    ok = True

    def check(name: str, cond: bool, detail: str = "") -> None:
        nonlocal ok
        ok &= bool(cond)
        print(f"{'ok  ' if cond else 'FAIL'} {name}{': ' + detail if detail else ''}")

    torch.manual_seed(0)
    x = torch.randn(256, 20, device=dev)
    y = torch.randint(0, 4, (256,), device=dev)
    m = mlp(20, 4).to(dev)
    t0 = time.perf_counter()
    fs = trainmedic.preflight(m, nn.CrossEntropyLoss(), (x[:64], y[:64]), torch.optim.Adam(m.parameters()),
                              overfit=True)
    check("healthy CUDA setup is silent", fs == [], f"{[str(f) for f in fs]} ({time.perf_counter() - t0:.2f} s)")
    fs = trainmedic.preflight(m, nn.CrossEntropyLoss(), (x[:64], y[:64] + 1))
    check("out-of-range class index caught before the kernel", [f.code for f in fs] == ["TM203"],
          fs[0].message if fs else "")
    torch.cuda.synchronize()
    check("CUDA context still usable", float((x @ x.T).sum()) == float((x @ x.T).sum()))
    yr = torch.randn(256, device=dev)
    fs = trainmedic.preflight(mlp(20, 1).to(dev), nn.MSELoss(), (x[:64], yr[:64]))
    check("TM201 on CUDA", [f.code for f in fs] == ["TM201"], fs[0].message if fs else "")

    # Medic with pre-flight: bit-identical to a run without it (dropout draws from the CUDA RNG)
    def run(preflight: bool) -> nn.Module:
        torch.manual_seed(1)
        model = mlp(20, 4).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        medic = Medic(model, opt, console=False, loss_fn=nn.CrossEntropyLoss(), preflight=preflight)
        for i in range(8):
            xb, yb = x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32]
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            medic.step(loss, batch=(xb, yb))
        pre = [cb for cb in medic.callbacks if isinstance(cb, PreflightCallback)]
        if pre:
            print(f"     Medic pre-flight on CUDA: {1000 * pre[0].seconds:.1f} ms, findings {medic.findings}")
        return model

    a, b = run(True), run(False)
    same = all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    check("pre-flight leaves a CUDA run bit-identical (dropout, Adam)", same)

    # bisection with the batch on the GPU
    xr = torch.randn(1000, 6, device=dev)
    yr = torch.randn(1000, 1, device=dev)
    xr[[137, 512, 888], 2] = float("nan")
    idx = torch.cat([torch.arange(200, 261, device=dev), torch.tensor([137, 512, 888], device=dev)])
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 1)).to(dev)
    res = bisect_rows(model, nn.MSELoss(), (xr[idx], yr[idx], idx))
    check("bisection on CUDA finds exactly the 3 rows", sorted(res.indices) == [137, 512, 888],
          f"{res.passes} forward passes")

    # lr_find on CUDA: originals and RNGs untouched
    model = mlp(20, 4).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = copy.deepcopy(model.state_dict())
    cpu_rng, cuda_rng = torch.get_rng_state(), torch.cuda.get_rng_state()
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    t0 = time.perf_counter()
    r = trainmedic.lr_find(model, opt, nn.functional.cross_entropy, batches)
    untouched = all(torch.equal(p, q) for p, q in zip(before.values(), model.state_dict().values()))
    check("lr_find on CUDA leaves model and RNGs untouched",
          untouched and torch.equal(cpu_rng, torch.get_rng_state()) and torch.equal(cuda_rng, torch.cuda.get_rng_state()),
          f"suggestion {r.suggestion:.3g}, diverged at {r.lr_diverged}, {time.perf_counter() - t0:.2f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
