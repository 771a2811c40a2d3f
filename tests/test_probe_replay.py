"""The probe replay (issue 12): plain SGD's rate after a probe chosen by replaying candidates, on real tiny trainings.

* an MLP regression started 10x above its tuned rate diverges, heal rolls back and probes; the probe's own
  read (``rise/10``) lands several times below the tuned rate, the replay picks a rate the curve supports, and
  the run ends closer to the tuned run than heal without the replay (seed 2: the benchmark's worst case);
* the replay trains copies: the run's RNG and the snapshot it replays from are untouched, and a replay that
  raises is switched off, reported as TM901, and heal keeps the probe's rate;
* a healthy run (no probe) is bit for bit the plain loop; without ``batch=`` nothing is replayed; a loop that
  clips its gradients is not replayed either, and a TM904 says why;
* the pieces: which rates are replayed, the pick, the thinned ramp.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from trainmedic import Medic
from trainmedic.heal.lr_probe import ProbeChoice
from trainmedic.heal.probe_replay import ProbeReplay
from trainmedic.heal.steering import REPLAY_FACTORS, REPLAY_RISE_DIVISOR, pick, replay_rates, thin_ramp
from trainmedic.zoo._common import mlp, regression_data

TUNED = 0.1
X, Y = regression_data(n=2048, d=16, seed=0, noise=0.3)
XV, YV = regression_data(n=1024, d=16, seed=0, noise=0.3, split="val")


def train(lr: float, mode: str, *, seed: int = 2, epochs: int = 10, batch: bool = True, replay: bool = True,
          hook=None, clip: float | None = None):
    """The benchmark's regression task (benchmarks/heal_tasks.py): 64 steps an epoch, MSE, plain SGD."""
    torch.manual_seed(seed)
    model = mlp(16, 1, hidden=64)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    medic = None
    if mode != "plain":
        medic = Medic(model, opt, mode=mode, console=False, loss_fn=F.mse_loss,
                      thresholds={"probe_replay": replay})
        if hook is not None:
            hook(medic)
    for epoch in range(epochs):
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for i in range(0, len(X) - 31, 32):
            xb, yb = X[order[i:i + 32]], Y[order[i:i + 32]]
            loss = F.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            if medic is None:
                opt.step()
            else:
                medic.step(loss, batch=(xb, yb) if batch else None)
        with torch.no_grad():
            v = float(F.mse_loss(model(XV), YV))
        if medic is not None:
            medic.end_epoch(val_loss=v)
    return medic, model, v


def _probes(medic):
    return [e for e in medic.events if e.get("type") == "action" and e.get("action") == "probe"]


def _three_runs() -> dict:
    """The tuned run and heal at 10x without and with the replay, as JSON: what the test compares."""
    _, _, tuned = train(TUNED, "plain")
    without, _, v_without = train(10 * TUNED, "heal", replay=False)
    medic, _, v_with = train(10 * TUNED, "heal")
    return {"tuned": tuned, "v_without": v_without, "v_with": v_with, "probes": _probes(medic),
            "probes_without": _probes(without)}


def test_a_start_10x_too_high_ends_closer_to_the_tuned_run_with_the_replay():
    # In a fresh process: after ~50 other test files in the same process, the first heal run of this task
    # was once judged at step 7 instead of 3 (TM305), so its probe read another trace; the cause was not found
    # (README, "Not done"). The comparison below is about the replay, so it runs where the history cannot reach.
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import torch; torch.set_num_threads(1); "
            "import test_probe_replay as t; print(json.dumps(t._three_runs()))")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    tuned, v_without, v_with = r["tuned"], r["v_without"], r["v_with"]
    (probe,), (probe_without,) = r["probes"], r["probes_without"]
    assert "replay" not in probe_without
    replay = probe["replay"]
    assert probe["lr_after"] == replay["picked"] and replay["probe_lr"] == probe_without["lr_after"]
    assert max(replay["rates"]) <= 10 * TUNED / 3  # never above the probe's cap
    assert abs(v_with / tuned - 1) < abs(v_without / tuned - 1)
    assert v_with / tuned < 1.1 < v_without / tuned


def test_the_replay_leaves_the_runs_rng_weights_and_snapshot_untouched():
    seen = {}

    def spy(medic):
        cb = next(c for c in medic.callbacks if isinstance(c, ProbeReplay))
        inner = cb.losses

        def losses(to_step, rates):
            snap = medic.actuator.snapshots[to_step]
            before = ({k: v.clone() for k, v in snap.model.items()}, torch.get_rng_state(),
                      [p.detach().clone() for p in medic.model.parameters()])
            out = inner(to_step, rates)
            seen["same"] = (all(torch.equal(before[0][k], v) for k, v in snap.model.items())
                            and torch.equal(before[1], torch.get_rng_state())
                            and all(torch.equal(a, p) for a, p in zip(before[2], medic.model.parameters())))
            seen["losses"] = out
            return out

        medic.engine.policy.steer.replay = losses

    train(10 * TUNED, "heal", epochs=1, hook=spy)
    assert seen["same"] is True
    assert len(seen["losses"]) == len(REPLAY_FACTORS)


def test_a_replay_that_raises_is_tm901_and_heal_keeps_the_probes_rate():
    def breaks(medic):
        medic.loss_fn = lambda out, target: (_ for _ in ()).throw(RuntimeError("replay broke"))

    medic, _, v = train(10 * TUNED, "heal", epochs=1, hook=breaks)
    failed = [f for f in medic.findings if f.code == "TM901"]
    assert len(failed) == 1 and "probe-replay" in failed[0].message
    (probe,) = _probes(medic)
    assert "replay" not in probe and math.isfinite(v)
    assert medic.engine.policy.steer.replay is None


def test_a_healthy_run_is_bit_identical_to_plain():
    _, plain, v_plain = train(TUNED, "plain", epochs=3)
    medic, healed, v_heal = train(TUNED, "heal", epochs=3)
    assert not _probes(medic) and v_heal == v_plain
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), healed.state_dict().values()))


def test_without_batches_nothing_is_replayed():
    medic, _, _ = train(10 * TUNED, "heal", epochs=1, batch=False)
    (probe,) = _probes(medic)
    assert "replay" not in probe
    assert next(c for c in medic.callbacks if isinstance(c, ProbeReplay)).runs == 0


def test_a_loop_that_clips_is_not_replayed_and_says_why():
    # clipped at 1.0, 30x stalls (TM317) and is probed; the copies would take unclipped steps
    medic, _, _ = train(30 * TUNED, "heal", epochs=2, clip=1.0)
    probes = _probes(medic)
    assert probes and all("replay" not in p for p in probes)
    aside = [f for f in medic.findings if f.code == "TM904"]
    assert len(aside) == 1 and aside[0].evidence["check"] == "probe-replay" and "clips" in aside[0].message
    cb = next(c for c in medic.callbacks if isinstance(c, ProbeReplay))
    assert cb.runs == 0 and not cb.active and medic.engine.policy.steer.replay is None


def _choice(rule: str, lr: float, **evidence) -> ProbeChoice:
    return ProbeChoice(lr, rule, "", (), (), evidence={"ceiling": 1.0, **evidence})


def test_the_rates_replayed_start_at_what_the_curve_supports():
    assert replay_rates(_choice("minimum/2", 0.1)) == pytest.approx([0.1 * f for f in REPLAY_FACTORS])
    # a rise only: the rise point over REPLAY_RISE_DIVISOR, not a decade; never above the cap (ceiling / 3)
    assert replay_rates(_choice("rise/10", 0.03, lr_rise=0.3))[0] == pytest.approx(0.3 / REPLAY_RISE_DIVISOR)
    assert replay_rates(_choice("rise/10", 0.2, lr_rise=2.0))[0] == pytest.approx(1 / 3)
    assert replay_rates(_choice("known-good", 0.1)) == []
    assert replay_rates(_choice("ceiling/10", 0.1)) == []


def test_pick_takes_the_lowest_rate_within_the_tolerance_of_the_best():
    assert pick([0.4, 0.2, 0.1], [0.30, 0.31, 0.50], tolerance=0.05) == 1
    assert pick([0.4, 0.2, 0.1], [0.30, 0.40, 0.50], tolerance=0.05) == 0
    assert pick([0.4, 0.2, 0.1], [math.inf, 0.40, 0.39], tolerance=0.0) == 2
    assert pick([0.4, 0.2], [math.inf, math.nan]) is None


def test_the_thinned_ramp_keeps_the_first_copy():
    ramp = list(range(11))
    assert thin_ramp(ramp, 8, keep_first=True) == [0, 4, 5, 6, 7, 8, 9, 10]
    assert thin_ramp(ramp, 8, keep_first=False) == list(range(3, 11))
    assert thin_ramp(ramp[:5], 8, keep_first=True) == ramp[:5]
