"""The rate audit (TM343) under Lightning: ``MedicCallback(mode="heal", loss_fn=...)`` on a real Trainer.

* Adam at 30x a good rate: the audit runs at the first epoch end (step 32), finds a lower rate winning on
  held-back batches, and heal acts; the first validation (before the audit) is the plain run's, the last is
  clearly better than the plain run's at the same rate;
* at a good rate the audit runs once, finds nothing, and the weights and validation losses are bit for bit
  the plain Trainer's;
* a module whose scheduler (a StepLR) holds the rate over the replays at a good rate: audited, nothing found,
  bit for bit the plain Trainer's;
* a Trainer that clips or accumulates gradients would not train as the audit's replays do: the audit steps
  aside with a TM904 that says why; without ``loss_fn`` there is no audit at all.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn import functional as F

from trainmedic.heal.rate_audit import RateAudit

try:
    import lightning.pytorch as pl
except ImportError:
    pl = pytest.importorskip("pytorch_lightning")


def _data():
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=1536, n_features=20, n_informative=12, n_redundant=4, n_classes=4,
                               n_clusters_per_class=3, flip_y=0.03, class_sep=1.5, random_state=0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    return x[:1024], y[:1024], x[1024:], y[1024:]


DATA = _data()


class Classifier(pl.LightningModule):
    def __init__(self, lr: float, schedule: bool = False):
        super().__init__()
        self.lr = lr
        self.schedule = schedule  # a StepLR halving the rate every 2 epochs
        self.net = torch.nn.Sequential(torch.nn.Linear(20, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                                       torch.nn.ReLU(), torch.nn.Linear(128, 4))
        self.vals: list[float] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.vals.append(float(loss))
        self.log("val_loss", loss)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.lr)
        if not self.schedule:
            return opt
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)}


def fit(lr: float, mode: str | None, out, *, epochs: int = 4, loss_fn=F.cross_entropy, schedule: bool = False,
        **trainer_kw):
    """32 steps an epoch, one validation batch; ``mode=None``: the plain Trainer. The report goes to ``out``
    (the callback's default is the working directory). Returns (callback, module)."""
    from trainmedic.integrations.lightning import MedicCallback

    x, y, xv, yv = DATA
    pl.seed_everything(0, verbose=False)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True,
                                        generator=torch.Generator().manual_seed(0))
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=512)
    module = Classifier(lr, schedule)
    cb = None if mode is None else MedicCallback(mode=mode, console=False, loss_fn=loss_fn,
                                                        out=out / "report")
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[] if cb is None else [cb], default_root_dir=out, **trainer_kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train, val)
    return cb, module


def _audits(cb):
    return [c for c in cb.medic.callbacks if isinstance(c, RateAudit)]


def test_adam_30x_is_audited_at_the_first_epoch_end_and_ends_better(tmp_path):
    _, plain = fit(3e-2, None, tmp_path)
    cb, healed = fit(3e-2, "heal", tmp_path)
    found = [f for f in cb.findings if f.code == "TM343"]
    assert len(found) == 1 and found[0].step == 32  # the first epoch end, after the epoch's 32 steps
    assert found[0].evidence["ratios"] and min(found[0].evidence["ratios"].values()) < 1 - 0.045
    assert healed.vals[0] == plain.vals[0]  # nothing changed before the audit
    assert healed.vals[-1] < 0.9 * plain.vals[-1], (plain.vals, healed.vals)
    assert _audits(cb)[0].runs >= 1
    assert (tmp_path / "report" / "findings.json").is_file()


def test_a_good_rate_is_audited_once_and_left_alone(tmp_path):
    _, plain = fit(1e-3, None, tmp_path)
    cb, healed = fit(1e-3, "heal", tmp_path)
    assert "TM343" not in {f.code for f in cb.findings}
    assert _audits(cb)[0].runs == 1
    assert healed.vals == plain.vals
    for a, b in zip(plain.parameters(), healed.parameters()):
        assert torch.equal(a, b)


def test_a_scheduled_module_at_a_good_rate_is_audited_and_left_alone(tmp_path):
    # the scheduler no longer refuses the audit (heal/audit_schedule.py): the StepLR held the rate over the
    # first epoch's replayed steps, so it runs there and finds nothing
    _, plain = fit(1e-3, None, tmp_path, schedule=True)
    cb, healed = fit(1e-3, "heal", tmp_path, schedule=True)
    assert not [f for f in cb.findings if f.code in ("TM343", "TM904")]
    assert _audits(cb)[0].runs == 1
    assert healed.vals == plain.vals
    for a, b in zip(plain.parameters(), healed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("kw", "why"), [({"gradient_clip_val": 1.0}, "clips gradients"),
                                         ({"accumulate_grad_batches": 2}, "accumulates gradients")])
def test_a_trainer_that_clips_or_accumulates_is_not_audited(kw, why, tmp_path):
    cb, _ = fit(3e-2, "heal", tmp_path, epochs=1, **kw)
    aside = [f for f in cb.findings if f.code == "TM904"]
    assert len(aside) == 1 and aside[0].evidence.get("check") == "rate-audit"
    assert why in aside[0].message
    assert not _audits(cb) and "TM343" not in {f.code for f in cb.findings}


def test_no_loss_fn_no_audit(tmp_path):
    cb, _ = fit(3e-2, "heal", tmp_path, epochs=1, loss_fn=None)
    assert not _audits(cb)
    assert not [f for f in cb.findings if f.code in ("TM343", "TM904")]
