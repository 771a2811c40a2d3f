"""A training script that uses its stdout the ways real scripts do, run by tests/test_console.py on a pty.

It prints fragments with ``end=""``, reads ``sys.stdout.encoding``, writes bytes to ``sys.stdout.buffer``
and (with ``--tqdm``) draws a tqdm bar, while ``Medic(console=True)`` shows its live status and reports
a NaN step (``--no-console``: the same script with ``console=False``, the reference). It never calls ``close()`` or ``save_report()``: the terminal must be restored at exit anyway.
``expected_stdout()`` is exactly what it writes to stdout.
"""

from __future__ import annotations

import sys
import time

STEPS = 60


def expected_stdout(encoding: str = "utf-8") -> bytes:
    out = f"encoding={encoding} | fragment one".encode()
    out += b" | fragment two\n"
    out += "raw bytes \u2713\n".encode()
    for epoch in range(3):
        out += f"epoch {epoch}: ".encode() + b"... " + b"done\n"
    out += b"finished\n"
    return out


def main() -> None:
    import torch

    import trainmedic

    torch.manual_seed(0)
    torch.set_num_threads(1)
    use_tqdm = "--tqdm" in sys.argv
    print(f"encoding={sys.stdout.encoding}", end="")
    print(" | fragment one", end="")
    sys.stdout.flush()
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    medic = trainmedic.Medic(model, opt, mode="heal", console="--no-console" not in sys.argv)
    print(" | fragment two")
    sys.stdout.flush()
    sys.stdout.buffer.write("raw bytes \u2713\n".encode())
    sys.stdout.buffer.flush()
    step = 0
    for epoch in range(3):
        print(f"epoch {epoch}: ", end="", flush=True)
        batches = range(STEPS // 3)
        if use_tqdm:
            from tqdm import tqdm

            batches = tqdm(batches, file=sys.stderr, leave=True, mininterval=0, ncols=60)
        for i in batches:
            x = torch.randn(16, 4)
            loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
            if step == 25:
                loss = loss * float("nan")
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
            step += 1
            time.sleep(0.01)  # long enough for the status line to be drawn between steps
            if i == 5:
                sys.stdout.write("... ")
                sys.stdout.flush()
        print("done", flush=True)
        medic.end_epoch()
    print("finished")


if __name__ == "__main__":
    main()
