"""The probe replay (plain SGD) under Lightning: ``MedicCallback(mode="heal", loss_fn=F.mse_loss)`` on a real Trainer.

The regression of ``test_probe_replay.py`` (``benchmarks/heal.py``'s, plain SGD, MSE, 64 steps an epoch) as a
LightningModule:

* at 10x its tuned rate it diverges in the first steps; heal rolls back and probes, the replay of the probe's
  batches picks a rate the curve supports, and the run ends closer to the tuned run than heal without the
  replay (``probe_replay=False``);
* a Trainer that clips its gradients would not train as the replay's copies do: the replay steps aside with a
  TM904 that names it and says why, and the probe keeps its own rate;
* at the tuned rate nothing is replayed and the weights and validation losses are bit for bit the plain
  Trainer's.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn import functional as F

from trainmedic.heal.probe_replay import ProbeReplay
from trainmedic.zoo._common import mlp, regression_data

try:
    import lightning.pytorch as pl
except ImportError:
    pl = pytest.importorskip("pytorch_lightning")

TUNED = 0.1
X, Y = regression_data(n=2048, d=16, seed=0, noise=0.3)
XV, YV = regression_data(n=1024, d=16, seed=0, noise=0.3, split="val")


class Regression(pl.LightningModule):
    def __init__(self, lr: float, schedule: bool = False):
        super().__init__()
        self.lr = lr
        self.schedule = schedule  # a StepLR halving the rate every 2 epochs
        self.net = mlp(16, 1, hidden=64)
        self.vals: list[float] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.vals.append(float(loss))
        self.log("val_loss", loss)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr)
        if not self.schedule:
            return opt
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)}


def fit(lr: float, mode: str | None, out, *, epochs: int = 10, replay: bool = True, schedule: bool = False,
        **trainer_kw):
    """64 steps an epoch, one validation batch; ``mode=None``: the plain Trainer. The report goes to ``out``
    (the callback's default is the working directory). Returns (callback, module)."""
    from trainmedic.integrations.lightning import MedicCallback

    torch.manual_seed(2)
    module = Regression(lr, schedule)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=32, shuffle=True,
                                        generator=torch.Generator().manual_seed(2))
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(XV, YV), batch_size=1024)
    cb = None if mode is None else MedicCallback(mode=mode, console=False, loss_fn=F.mse_loss,
                                                 thresholds={"probe_replay": replay}, out=out / "report")
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[] if cb is None else [cb], default_root_dir=out, **trainer_kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train, val)
    return cb, module


def _probes(cb):
    return [e for e in cb.medic.events if e.get("type") == "action" and e.get("action") == "probe"]


def _replays(cb):
    return [c for c in cb.medic.callbacks if isinstance(c, ProbeReplay)]


def test_sgd_10x_is_replayed_after_the_probe_and_ends_closer_to_the_tuned_run(tmp_path):
    _, tuned = fit(TUNED, None, tmp_path)
    cb, healed = fit(10 * TUNED, "heal", tmp_path)
    without, not_replayed = fit(10 * TUNED, "heal", tmp_path, replay=False)
    (probe,) = _probes(cb)
    (probe_without,) = _probes(without)
    assert "replay" not in probe_without and not _replays(without)
    replay = probe["replay"]
    assert replay["probe_lr"] == probe_without["lr_after"]  # the same probe, read the same way
    assert probe["lr_after"] == replay["picked"] and max(replay["rates"]) <= 10 * TUNED / 3
    assert _replays(cb)[0].runs == 1
    ratio, ratio_without = healed.vals[-1] / tuned.vals[-1], not_replayed.vals[-1] / tuned.vals[-1]
    assert abs(ratio - 1) < abs(ratio_without - 1) and ratio < 1.1, (ratio, ratio_without)
    assert not [f for f in cb.findings if f.code in ("TM901", "TM904")]


def test_a_trainer_that_clips_is_not_replayed_and_says_why(tmp_path):
    cb, _ = fit(30 * TUNED, "heal", tmp_path, epochs=2, gradient_clip_val=1.0)
    aside = [f for f in cb.findings if f.code == "TM904"]
    assert len(aside) == 1 and aside[0].evidence.get("check") == "probe-replay"  # not the audit: plain SGD
    assert "clips gradients" in aside[0].message
    assert not _replays(cb) and cb.medic.engine.policy.steer.replay is None
    probes = _probes(cb)  # clipped at 1.0, 30x stalls (TM317) and is probed: at the probe's own rate
    assert probes and all("replay" not in p for p in probes)


def test_a_scheduled_module_is_not_replayed_and_says_why(tmp_path):
    # the probe replay continues at absolute rates a scheduler would overwrite; the rate audit (adaptive
    # optimizers) judges a scheduler itself, so the refusal stays the probe replay's alone
    cb, _ = fit(30 * TUNED, "heal", tmp_path, epochs=1, schedule=True)
    aside = [f for f in cb.findings if f.code == "TM904"]
    assert len(aside) == 1 and aside[0].evidence.get("check") == "probe-replay"
    assert "scheduler" in aside[0].message
    assert not _replays(cb)


def test_a_tuned_run_is_bit_identical_to_the_plain_trainer(tmp_path):
    _, plain = fit(TUNED, None, tmp_path, epochs=3)
    cb, healed = fit(TUNED, "heal", tmp_path, epochs=3)
    assert not _probes(cb) and _replays(cb)[0].active and _replays(cb)[0].runs == 0
    assert healed.vals == plain.vals
    for a, b in zip(plain.parameters(), healed.parameters()):
        assert torch.equal(a, b)
