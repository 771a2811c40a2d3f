"""TM116 ordered-batches: training data served in the order of its labels, found from the targets each front
end sees; shuffled twins of the same trainings stay silent.

The trainings are ``run_scripts/ordered.py`` (four-class blobs under ``F.cross_entropy``, a smooth
regression under ``nn.MSELoss``, both stored sorted by the target): under ``trainmedic run`` as an ordinary
script, with ``medic.step(loss, batch=(x, y))``, and inside a LightningModule.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainmedic import Medic
from trainmedic.instrument.runner import run_script
from trainmedic.rules.ordering import MAX_VON_NEUMANN, MAX_WITHIN_RATIO, MIN_STEPS, judge_order

SCRIPTS = Path(__file__).resolve().parent / "run_scripts"
sys.path.insert(0, str(SCRIPTS))
from ordered import data  # noqa: E402


def batch_stats(y: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chunks = [y[i:i + batch] for i in range(0, len(y) - batch + 1, batch)]
    return (np.array([len(c) for c in chunks], float), np.array([c.mean() for c in chunks]),
            np.array([c.var(ddof=1) for c in chunks]))


# -- the pure judgement ------------------------------------------------------------------------------------
def test_sorted_labels_are_judged_ordered_and_shuffled_ones_are_not():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 200).astype(float)
    j = judge_order(*batch_stats(labels, 25))
    assert j is not None and j.within_ratio < MAX_WITHIN_RATIO and j.von_neumann < MAX_VON_NEUMANN
    assert j.pure_share > 0.7
    for seed in range(20):  # shuffled: the ratio is about 1 and the batch means independent
        assert judge_order(*batch_stats(np.random.default_rng(seed).permutation(labels), 32)) is None
    # batches of two from shuffled binary labels: the noisiest shuffled case stays silent
    binary = rng.integers(0, 2, 4000).astype(float)
    assert judge_order(*batch_stats(binary, 2)) is None
    # a sorted regression target
    assert judge_order(*batch_stats(np.sort(rng.normal(size=2000)), 50)) is not None


def test_homogeneous_batches_drawn_at_random_are_not_ordered():
    # one class per batch by design, classes drawn at random (or a GAN's alternating all-ones / all-zeros
    # targets): the batches are narrow but do not follow one another
    rng = np.random.default_rng(1)
    means = rng.integers(0, 5, 200).astype(float)
    assert judge_order(np.full(200, 32.0), means, np.zeros(200)) is None
    alternating = np.arange(200) % 2.0
    assert judge_order(np.full(200, 32.0), alternating, np.zeros(200)) is None
    # one value over every step (a generator's all-ones target): nothing to judge
    assert judge_order(np.full(200, 32.0), np.ones(200), np.zeros(200)) is None
    # sorted, but too few steps to judge yet
    few = batch_stats(np.repeat(np.arange(5), 20).astype(float), 4)
    assert len(few[0]) < MIN_STEPS and judge_order(*few) is None


# -- real trainings ------------------------------------------------------------------------------------------
def under_run(kind: str, healthy: bool, out: Path) -> list[dict]:
    argv = [kind] + (["--healthy"] if healthy else [])
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_script(str(SCRIPTS / "ordered.py"), argv, out=out, console=False, summary=False) == 0
    return json.loads((out / "findings.json").read_text())["findings"]


@pytest.mark.parametrize("kind", ["classes", "regression"])
def test_run_names_label_ordered_batches(kind, tmp_path):
    found = under_run(kind, False, tmp_path / "sorted")
    tm116 = [f for f in found if f["code"] == "TM116"]
    assert tm116, found
    ev = tm116[0]["evidence"]
    assert ev["within_over_pooled_variance"] < MAX_WITHIN_RATIO and ev["von_neumann_ratio"] < MAX_VON_NEUMANN
    assert ev["batch_size"] == pytest.approx(16)
    assert tm116[0]["step"] < 70  # judged within the first epochs' steps (40 per epoch), not at the end
    assert "shuffle=True" in tm116[0]["message"]
    if kind == "classes":
        assert ev["single_label_batches"] > 0.8  # 160 rows per class, batches of 16: all but none mixed


@pytest.mark.parametrize("kind", ["classes", "regression"])
def test_run_stays_silent_on_shuffled_twin(kind, tmp_path):
    found = under_run(kind, True, tmp_path / "shuffled")
    assert [f for f in found if f["severity"] in ("warning", "error")] == [], found


def train_medic(kind: str, healthy: bool, give_batch: bool = True) -> list:
    torch.manual_seed(0)
    x, y = data(kind, torch.Generator().manual_seed(0))
    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4 if kind == "classes" else 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    medic = Medic(net, opt, console=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=healthy)
    for _ in range(3):
        for xb, yb in loader:
            out = net(xb)
            loss = F.cross_entropy(out, yb) if kind == "classes" else F.mse_loss(out, yb)
            opt.zero_grad()
            loss.backward()
            medic.step(loss, batch=(xb, yb) if give_batch else None)
        medic.end_epoch()
    return medic.findings


@pytest.mark.parametrize("kind", ["classes", "regression"])
def test_medic_with_batch_names_ordered_batches_and_not_shuffled_ones(kind):
    found = train_medic(kind, healthy=False)
    assert "TM116" in {f.code for f in found}
    healthy = train_medic(kind, healthy=True)
    assert [f.code for f in healthy if f.severity in ("warning", "error")] == []


def test_lightning_names_ordered_batches_and_not_shuffled_ones(tmp_path):
    try:
        import lightning.pytorch as pl
    except ImportError:
        pl = pytest.importorskip("pytorch_lightning")
    from trainmedic.integrations.lightning import MedicCallback

    def fit(healthy: bool) -> list:
        torch.manual_seed(0)
        x, y = data("classes", torch.Generator().manual_seed(0))
        net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))

        class Module(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = net

            def training_step(self, batch, batch_idx):
                xb, yb = batch
                return F.cross_entropy(self.net(xb), yb)

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=1e-2)

        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=healthy)
        cb = MedicCallback(out=tmp_path / f"lightning{healthy}", console=False)
        trainer = pl.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[cb],
                             default_root_dir=tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(Module(), loader)
        return cb.findings

    assert "TM116" in {f.code for f in fit(False)}
    assert [f.code for f in fit(True) if f.severity in ("warning", "error")] == []
