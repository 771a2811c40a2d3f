"""Checkpoints: crash-safe writes, exact resume, damaged files, a full disk, and files that would run code."""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from trainmedic import Medic
from trainmedic.heal import checkpoint as ck

HERE = Path(__file__).parent
WORKER = HERE / "_crash_worker.py"


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def _model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.1), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return model, opt


def _train(medic, model, opt, steps):
    for _ in range(steps):
        g = torch.Generator().manual_seed(medic.step_count)
        x = torch.randn(16, 4, generator=g)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        medic.step(loss)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Worker:
    """Line protocol with tests/_crash_worker.py serve."""

    def __init__(self):
        env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"), TRAINMEDIC_NO_LIVE="1")
        self.proc = subprocess.Popen([sys.executable, str(WORKER), "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self._line(120) == ["ready"]

    def _line(self, timeout=60.0):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "crash worker did not answer"
        line = self.proc.stdout.readline()
        assert line, f"crash worker died: {self.proc.stderr.read()}"
        return line.split()

    def start(self, directory):
        self.proc.stdin.write(f"{directory}\n")
        self.proc.stdin.flush()
        word, pid = self._line()
        assert word == "pid"
        return int(pid)

    def wait_for_progress(self, pid, ckpt_dir, step):
        """Poll until a checkpoint at or past ``step`` is complete (its sidecar exists)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [int(p.name[5:14]) for p in ckpt_dir.glob("ckpt-*.json")] if ckpt_dir.is_dir() else []
            if done and max(done) >= step:
                return
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.005)
            assert not ready, f"child {pid} ended before step {step}"
        raise AssertionError(f"child {pid} did not reach step {step}")

    def wait(self, pid):
        word, got, status = self._line()
        assert word == "exit" and int(got) == pid
        return int(status)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# ----------------------------------------------------------------------------------------------------
# the crash test
# ----------------------------------------------------------------------------------------------------
def test_sigkill_twenty_times_then_resume_equals_uninterrupted_run(tmp_path):
    """A training process is SIGKILLed at 20 random moments and resumed each time; at the end its weights
    are bit-for-bit those of an uninterrupted run, and its loss history has no gap and no duplicate."""
    rng = random.Random(20240404)
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "crashed"
    ref_dir.mkdir()
    run_dir.mkdir()
    worker = _Worker()
    try:
        pid = worker.start(ref_dir)
        assert worker.wait(pid) == 0, "the uninterrupted reference run failed"
        from _crash_worker import EPOCHS, STEPS_PER_EPOCH

        total = EPOCHS * STEPS_PER_EPOCH
        kills, resumed_from, early = 0, [], 0
        for i in range(20):
            pid = worker.start(run_dir)
            if rng.random() < 0.2:
                # A kill at once: while the child builds the model or loads the checkpoint.
                early += 1
                time.sleep(rng.uniform(0.0, 0.02))
            else:
                # A random point of the run (the targets spread over the whole run, so every segment
                # makes progress and none reaches the end), then a random delay of a few steps: the kill
                # lands in a step, between steps, or in a checkpoint write.
                target = rng.uniform(i, i + 1) * (total - 20) / 20
                worker.wait_for_progress(pid, run_dir / "ckpt", target)
                time.sleep(rng.uniform(0.0, 0.03))
            os.kill(pid, signal.SIGKILL)
            status = worker.wait(pid)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
                "the run ended before it was killed"
            kills += 1
            latest = ck.latest_checkpoint(run_dir / "ckpt")
            resumed_from.append(latest.name if latest else None)
    finally:
        worker.close()
    assert kills == 20
    # The kills landed at many different points of the run.
    assert len(set(resumed_from)) >= 10, resumed_from

    # The last resume runs in a fresh interpreter (not a fork), to the end.
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"), TRAINMEDIC_NO_LIVE="1")
    done = subprocess.run([sys.executable, str(WORKER), "run", str(run_dir)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    ref = torch.load(ref_dir / "final.pt", weights_only=True)
    got = torch.load(run_dir / "final.pt", weights_only=True)
    assert _same(ref, got), "the resumed model differs from the uninterrupted run's"

    def events(d):
        rows = [json.loads(line) for line in (d / "report" / "events.jsonl").read_text().splitlines()]
        return rows[0], [r for r in rows[1:] if not (r.get("type") == "action" and r.get("action") == "resume")]

    meta_ref, ev_ref = events(ref_dir)
    meta_got, ev_got = events(run_dir)
    samples = [r for r in ev_got if r["type"] == "sample"]
    assert [r["step"] for r in samples] == list(range(total)), "loss history has gaps or duplicates"
    assert ev_got == ev_ref, "curves, epochs, findings or actions differ from the uninterrupted run"
    assert any(r.get("action") == "rollback" for r in ev_ref)  # the heal state survived the crashes too
    assert meta_got["steps"] == meta_ref["steps"] == total
    assert meta_got["epochs"] == meta_ref["epochs"]
    findings = json.loads((run_dir / "report" / "findings.json").read_text())["findings"]
    assert not [f for f in findings if f["code"] in ("TM320", "TM321", "TM322", "TM901")], findings
    # No half-written file survives: every checkpoint left on disk verifies.
    for info in ck.list_checkpoints(run_dir / "ckpt", include_untrusted=True):
        ck.load_checkpoint(info.path, info=info)
    assert not list((run_dir / "ckpt").glob(".ckpt-*.tmp"))


# ----------------------------------------------------------------------------------------------------
# resume in process
# ----------------------------------------------------------------------------------------------------
def test_resume_restores_weights_optimizer_rng_and_history(tmp_path):
    model, opt = _model()
    medic = Medic(model, opt, mode="heal", console=False, checkpoint_dir=tmp_path, every=10, keep=2)
    assert medic.resume() is None  # fresh start: nothing to do
    _train(medic, model, opt, 30)
    w30, rng30 = _weights(model), torch.get_rng_state()
    hist30 = list(medic.history.rows)
    _train(medic, model, opt, 5)  # progress lost by the "crash"

    model2, opt2 = _model()
    medic2 = Medic(model2, opt2, mode="heal", console=False, checkpoint_dir=tmp_path, every=10, keep=2)
    info = medic2.resume()
    assert info is not None and info.step == 30
    assert medic2.step_count == 30 and _same(_weights(model2), w30)
    assert torch.equal(torch.get_rng_state(), rng30)
    assert medic2.history.rows == hist30
    assert opt2.state_dict()["state"][0]["step"] == 30  # Adam's moments came back too
    assert sorted(medic2.actuator.snapshots) == sorted(medic.actuator.snapshots)
    assert [e for e in medic2.events if e.get("action") == "resume"][0]["file"] == info.path.name
    # keep=2: only the two newest checkpoints (plus the best, which is one of them here) remain.
    assert [i.step for i in ck.list_checkpoints(tmp_path)] == [20, 30]


def test_resume_needs_a_directory():
    model, opt = _model()
    medic = Medic(model, opt, console=False)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        medic.resume()


def test_bad_arguments_are_explained():
    model, opt = _model()
    with pytest.raises(ValueError, match="every"):
        ck.CheckpointCallback("x", every=0)
    with pytest.raises(ValueError, match="keep"):
        ck.CheckpointCallback("x", keep=0)


def test_checkpoint_is_plain_and_loads_weights_only(tmp_path):
    model, opt = _model()
    sched = torch.optim.lr_scheduler.StepLR(opt, 5)
    medic = Medic(model, opt, sched, mode="heal", console=False, checkpoint_dir=tmp_path, every=60)
    _train(medic, model, opt, 60)
    medic.end_epoch(val_loss=1.0)
    payload = ck.load_checkpoint(ck.latest_checkpoint(tmp_path))
    assert payload["format"] == ck.FORMAT and payload["step"] == 60
    for key in ("model", "optimizer", "scheduler", "rng", "driver"):
        assert payload[key] is not None
    assert isinstance(payload["rng"]["numpy"][1], torch.Tensor)
    with pytest.raises(TypeError, match="weights-only"):
        ck.to_plain({"a": [object()]})


def test_keeps_the_best_checkpoint(tmp_path):
    model, opt = _model()
    medic = Medic(model, opt, console=False, checkpoint_dir=tmp_path, every=None, keep=1)
    vals = [3.0, 1.0, 2.0, 2.5]
    for v in vals:
        _train(medic, model, opt, 3)
        medic.end_epoch(val_loss=v)
    best = ck.best_checkpoint(tmp_path)
    assert best is not None and best.name == ck.checkpoint_name(6, 2)  # after the epoch with val 1.0
    names = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert names == [ck.checkpoint_name(6, 2), ck.checkpoint_name(12, 4)]


# ----------------------------------------------------------------------------------------------------
# damaged files
# ----------------------------------------------------------------------------------------------------
def _three_checkpoints(tmp_path):
    model, opt = _model()
    medic = Medic(model, opt, console=False, checkpoint_dir=tmp_path, every=5, keep=5)
    _train(medic, model, opt, 15)
    return [i.path for i in ck.list_checkpoints(tmp_path)]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_latest_checkpoint_falls_back_to_previous_with_a_finding(tmp_path, damage):
    paths = _three_checkpoints(tmp_path)
    latest = paths[-1]
    data = latest.read_bytes()
    if damage == "truncate":
        latest.write_bytes(data[: len(data) // 2])
    else:
        i = len(data) // 3
        latest.write_bytes(data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1 :])

    model, opt = _model()
    medic = Medic(model, opt, console=False, checkpoint_dir=tmp_path, every=5)
    info = medic.resume()
    assert info.path == paths[-2] and medic.step_count == 10
    f = [f for f in medic.findings if f.code == "TM320"]
    assert len(f) == 1 and f[0].severity == "warning"
    assert latest.name in f[0].message and f[0].action == f"resumed from {paths[-2].name}"
    assert not latest.exists() and latest.with_name(latest.name + ".corrupt").exists()
    # The damaged file is never tried again.
    assert ck.latest_checkpoint(tmp_path) == paths[-2]


def test_unreadable_sidecar_is_not_trusted(tmp_path):
    paths = _three_checkpoints(tmp_path)
    ck.sidecar_path(paths[-1]).write_text("{not json")
    model, opt = _model()
    medic = Medic(model, opt, console=False, checkpoint_dir=tmp_path, every=5)
    assert medic.resume().path == paths[-2]
    assert any(f.code == "TM320" and "sidecar" in f.message for f in medic.findings)


def test_interrupted_write_without_sidecar_is_ignored_silently(tmp_path):
    paths = _three_checkpoints(tmp_path)
    ck.sidecar_path(paths[-1]).unlink()  # killed between the rename and the sidecar
    model, opt = _model()
    medic = Medic(model, opt, console=False, checkpoint_dir=tmp_path, every=5)
    assert medic.resume().path == paths[-2]
    assert not medic.findings


# ----------------------------------------------------------------------------------------------------
# a full disk
# ----------------------------------------------------------------------------------------------------
def test_enospc_during_write_keeps_previous_checkpoint_and_training_goes_on(tmp_path, monkeypatch):
    model, opt = _model()
    medic = Medic(model, opt, console=False, checkpoint_dir=tmp_path, every=5, keep=1)
    _train(medic, model, opt, 5)
    good = ck.latest_checkpoint(tmp_path)
    good_bytes = good.read_bytes()

    real = ck._write_bytes

    def full_disk(path, data):
        with open(path, "wb") as fh:  # part of the data reaches the disk, then the disk is full
            fh.write(data[: len(data) // 3])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(ck, "_write_bytes", full_disk)
    _train(medic, model, opt, 10)  # two checkpoint attempts fail
    assert medic.step_count == 15  # training went on
    f = [f for f in medic.findings if f.code == "TM321"]
    assert len(f) == 1 and f[0].severity == "warning" and "ENOSPC" in f[0].message
    assert f[0].evidence["count"] == 2 and f[0].evidence["previous"] == good.name
    assert ck.latest_checkpoint(tmp_path) == good and good.read_bytes() == good_bytes
    assert not list(tmp_path.glob(".ckpt-*"))  # the partial temporary files were removed
    assert ck.load_checkpoint(good)["step"] == 5

    monkeypatch.setattr(ck, "_write_bytes", real)  # space again: checkpoints resume
    _train(medic, model, opt, 5)
    assert ck.latest_checkpoint(tmp_path).name == ck.checkpoint_name(20, 0)
    model2, opt2 = _model()
    medic2 = Medic(model2, opt2, console=False, checkpoint_dir=tmp_path)
    assert medic2.resume().step == 20
    assert any(f.code == "TM321" for f in medic2.findings)  # the warning travels with the history


# ----------------------------------------------------------------------------------------------------
# a file that would run code
# ----------------------------------------------------------------------------------------------------
class _Payload:
    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _craft(path: Path, marker: Path, *, zip_format: bool):
    evil = _Payload()
    evil.marker = str(marker)
    obj = {"format": ck.FORMAT, "version": 1, "step": 99, "epoch": 0, "model": evil}
    if zip_format:
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj))
    data = path.read_bytes()
    import hashlib

    # A matching sidecar: the attacker can compute a checksum too; weights_only is the real barrier.
    ck.sidecar_path(path).write_text(json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                                 "step": 99, "seq": 99}))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("zip_format", [True, False])
def test_checkpoint_crafted_to_run_code_is_refused(tmp_path, zip_format):
    paths = _three_checkpoints(tmp_path)
    marker = tmp_path / "PWNED"
    evil = tmp_path / ck.checkpoint_name(99, 0)
    _craft(evil, marker, zip_format=zip_format)
    assert ck.latest_checkpoint(tmp_path) == evil

    with pytest.raises(ck.CheckpointUnsafe, match="refused"):
        ck.load_checkpoint(evil)
    with pytest.raises(ck.CheckpointUnsafe):
        ck.load_checkpoint(evil, verify=False)
    assert not marker.exists()

    model, opt = _model()
    medic = Medic(model, opt, console=False, checkpoint_dir=tmp_path, every=5)
    assert medic.resume().path == paths[-1]
    assert not marker.exists(), "loading the checkpoint ran code"
    f = [f for f in medic.findings if f.code == "TM322"]
    assert len(f) == 1 and f[0].severity == "error" and "run code" in f[0].message
    assert (tmp_path / (evil.name + ".corrupt")).exists()
    # The same file loaded the unsafe way would have run the code: the test's payload is real.
    set_aside = tmp_path / (evil.name + ".corrupt")
    if zip_format:
        torch.load(set_aside, weights_only=False)
    else:
        pickle.loads(set_aside.read_bytes())
    assert marker.exists()


def test_rng_round_trip_through_plain_form():
    from trainmedic.heal.snapshot import rng_state, set_rng_state

    random.random()
    np.random.rand()
    state = ck.rng_to_plain(rng_state())
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(ck.rng_from_plain(ck.to_plain(state)))
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == a


def test_grad_scaler_and_scheduler_state_come_back(tmp_path):
    model, opt = _model()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=2)
    medic = Medic(model, opt, sched, scaler, console=False, checkpoint_dir=tmp_path, every=None)
    for _ in range(4):
        for _ in range(3):
            x = torch.randn(8, 4)
            loss = ((model(x) - 1) ** 2).mean()
            opt.zero_grad()
            scaler.scale(loss).backward()
            medic.step(loss)
        medic.end_epoch(val_loss=float(loss.detach()))
    model2, opt2 = _model()
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=3, gamma=0.5)
    scaler2 = torch.amp.GradScaler("cpu", init_scale=1.0)
    medic2 = Medic(model2, opt2, sched2, scaler2, console=False, checkpoint_dir=tmp_path)
    info = medic2.resume()
    assert info.step == 12 and info.epoch == 4 and medic2.epoch == 4
    assert scaler2.get_scale() == scaler.get_scale() != 1.0
    assert sched2.state_dict() == sched.state_dict()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert [e["epoch"] for e in medic2.epochs] == [0, 1, 2, 3]


def test_checkpoints_without_snapshots_are_smaller_and_resume_with_a_fresh_snapshot(tmp_path):
    sizes = {}
    for snaps in (True, False):
        d = tmp_path / str(snaps)
        model, opt = _model()
        medic = Medic(model, opt, mode="heal", console=False, thresholds={"snapshot_every": 10},
                      callbacks=[ck.CheckpointCallback(d, every=40, snapshots=snaps)])
        _train(medic, model, opt, 40)
        assert len(medic.actuator.snapshots) >= 3
        sizes[snaps] = ck.latest_checkpoint(d).stat().st_size
        model2, opt2 = _model()
        medic2 = Medic(model2, opt2, mode="heal", console=False)
        ck.resume(medic2, d)
        if snaps:
            assert sorted(medic2.actuator.snapshots) == sorted(medic.actuator.snapshots)
        else:
            assert sorted(medic2.actuator.snapshots) == [40]
            assert _same(medic2.actuator.snapshots[40].model, _weights(model))
    assert sizes[False] < sizes[True]
