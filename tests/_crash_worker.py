"""The training run of the crash test (tests/test_checkpoint.py), and a fork server that starts it.

    python _crash_worker.py run DIR     train to the end, resuming from DIR's checkpoints; writes DIR/final.pt
                                        and the report files into DIR/report
    python _crash_worker.py serve       fork server: for every line "DIR" on stdin, fork a child that runs
                                        train(DIR), print "pid N", wait for it, print "exit N STATUS"

The fork server pays the interpreter + torch import (~2 s on this machine) once, so twenty kills fit in a
few seconds; each forked child is a separate process that SIGKILL ends at once, losing all its memory.

The run is deterministic on the CPU: a tiny MLP with dropout (the torch RNG), noise from NumPy and
Python's `random`, Adam, a StepLR schedule, heal mode with a loss rebound that it rolls back (so the
snapshots, the lr factor and the rollback budget must survive the crashes too), a checkpoint every 8
steps and at every improving epoch end. The loop is written the way a resumable loop is written: epochs from
``medic.epoch``, the steps already done in that epoch skipped.
"""

from __future__ import annotations

import io
import os
import random
import sys

import numpy as np
import torch

from trainmedic import Medic

EPOCHS = 6
STEPS_PER_EPOCH = 40
EVERY = 8
REBOUND = (130, 160)


def make():
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                                torch.nn.Linear(32, 1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.7)
    return model, opt, sched


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(32, 8, generator=g)
    y = (x[:, :4].sum(1, keepdim=True) - x[:, 4:].prod(1, keepdim=True)).tanh()
    return x, y


def train(directory: str) -> None:
    model, opt, sched = make()
    medic = Medic(model, opt, sched, mode="heal", console=False, checkpoint_dir=os.path.join(directory, "ckpt"),
                  every=EVERY, keep=3)
    medic.resume()
    val_x, val_y = batch(-1)
    for epoch in range(medic.epoch, EPOCHS):
        model.train()
        for _ in range(medic.step_count - epoch * STEPS_PER_EPOCH, STEPS_PER_EPOCH):
            x, y = batch(medic.step_count)
            y = y + 0.01 * float(np.random.randn()) + 0.001 * random.random()  # NumPy's and Python's RNG
            loss = torch.nn.functional.mse_loss(model(x), y)  # dropout draws from torch's RNG
            if REBOUND[0] <= medic.step_count < REBOUND[1]:
                loss = loss * 40  # note 004's rebound: heal mode rolls back to a snapshot and halves the lr
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
        model.eval()
        with torch.no_grad():
            val = torch.nn.functional.mse_loss(model(val_x), val_y).item()
        medic.end_epoch(val_loss=val)
        if medic.should_stop:
            break
    torch.save(model.state_dict(), os.path.join(directory, "final.pt"))
    medic.save_report(os.path.join(directory, "report"), html=False)


def serve() -> None:
    # Warm up what the first optimizer and the first torch.save import (torch._dynamo: ~2 s), so each
    # forked child starts training at once.
    make()
    torch.save({"x": torch.zeros(1)}, io.BytesIO())
    print("ready", flush=True)
    for line in sys.stdin:
        directory = line.strip()
        if not directory:
            continue
        pid = os.fork()
        if pid == 0:  # the child: train, then leave without running the parent's cleanup
            code = 0
            try:
                train(directory)
            except BaseException as exc:  # pragma: no cover - reported through the exit status
                print(f"child error {exc!r}", file=sys.stderr, flush=True)
                code = 1
            finally:
                os._exit(code)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {pid} {status}", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "run":
        train(sys.argv[2])
    else:
        serve()
