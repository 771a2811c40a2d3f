"""Wiring and data faults are found from what each front end sees (issue 10), healthy twins stay quiet.

Each case of ``run_scripts/wiring_cases.py`` is trained three ways: as an ordinary script under
``trainmedic run`` (no trainmedic import), in a hand-written loop with a plain ``medic.step(loss)`` (no
``loss_fn``, no ``batch``), inside a LightningModule whose ``training_step`` calls a submodule and
defines no ``forward``, and under the Hugging Face ``Trainer`` with a module that computes its own loss.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from trainmedic import Medic
from trainmedic.instrument.runner import run_script

SCRIPTS = Path(__file__).resolve().parent / "run_scripts"
sys.path.insert(0, str(SCRIPTS))
from wiring_cases import EXPECT, build  # noqa: E402

CASES = sorted(EXPECT)


def loud(codes: list[tuple[str, str]]) -> list[str]:
    return [c for c, severity in codes if severity in ("warning", "error")]


def check(case: str, fault: bool, found: list[tuple[str, str]]) -> None:
    codes = {c for c, _ in found}
    if fault:
        assert codes & EXPECT[case], f"{case}: expected {EXPECT[case]}, got {sorted(codes)}"
    else:
        assert not codes & EXPECT[case] and loud(found) == [], f"{case} healthy: {found}"


def under_run(case: str, fault: bool, out: Path) -> list[tuple[str, str]]:
    argv = [case] if fault else [case, "--healthy"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_script(str(SCRIPTS / "wiring.py"), argv, out=out, console=False, summary=False) == 0
    doc = json.loads((out / "findings.json").read_text())
    return [(f["code"], f["severity"]) for f in doc["findings"]]


def under_medic(case: str, fault: bool) -> list[tuple[str, str]]:
    net, loss_fn, x, y, params = build(case, fault)
    opt = torch.optim.Adam(params, lr=1e-3)
    medic = Medic(net, opt, console=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    for _ in range(2):
        for xb, yb in loader:
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
        medic.end_epoch()
    return [(f.code, f.severity) for f in medic.findings]


def under_lightning(case: str, fault: bool, tmp_path: Path) -> list[tuple[str, str]]:
    try:
        import lightning.pytorch as pl
    except ImportError:
        pl = pytest.importorskip("pytorch_lightning")
    from trainmedic.integrations.lightning import MedicCallback

    net, loss_fn, x, y, params = build(case, fault)

    class Module(pl.LightningModule):  # as users write it: no forward, training_step calls the submodule
        def __init__(self):
            super().__init__()
            self.net = net

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            return loss_fn(self.net(xb), yb)

        def configure_optimizers(self):
            return torch.optim.Adam(params, lr=1e-3)

    pl.seed_everything(0, verbose=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    cb = MedicCallback(out=tmp_path / "lightning", console=False)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[cb],
                         default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Module(), loader)
    return [(f.code, f.severity) for f in cb.findings]


def under_transformers(case: str, fault: bool, tmp_path: Path) -> list[tuple[str, str]]:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from trainmedic.integrations.transformers import MedicCallback

    transformers.logging.set_verbosity_error()
    net, loss_fn, x, y, params = build(case, fault)

    class Model(torch.nn.Module):  # the Trainer trains any module whose forward returns its loss
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, labels=None):
            pred = self.net(x)
            return {"loss": loss_fn(pred, labels), "logits": pred}

    rows = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), per_device_train_batch_size=32, num_train_epochs=1, max_grad_norm=0.0,
        save_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True, seed=0,
        dataloader_num_workers=0)
    cb = MedicCallback(out=tmp_path / "hf-report", console=False)
    # the optimizer over the case's own parameters (the Trainer's default would leave out frozen ones)
    trainer = transformers.Trainer(model=Model(), args=args, train_dataset=rows, callbacks=[cb],
                                   optimizers=(torch.optim.Adam(params, lr=1e-3), None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    return [(f.code, f.severity) for f in cb.findings]


@pytest.mark.parametrize("case", CASES)
def test_run(case, tmp_path):
    check(case, True, under_run(case, True, tmp_path / "fault"))
    check(case, False, under_run(case, False, tmp_path / "healthy"))


@pytest.mark.parametrize("case", CASES)
def test_medic_without_loss_fn(case):
    check(case, True, under_medic(case, True))
    check(case, False, under_medic(case, False))


@pytest.mark.parametrize("case", CASES)
def test_lightning(case, tmp_path):
    check(case, True, under_lightning(case, True, tmp_path / "fault"))
    check(case, False, under_lightning(case, False, tmp_path / "healthy"))


@pytest.mark.parametrize("case", CASES)
def test_transformers(case, tmp_path):
    check(case, True, under_transformers(case, True, tmp_path / "fault"))
    check(case, False, under_transformers(case, False, tmp_path / "healthy"))


def test_findings_say_which_loss_and_tensor(tmp_path):
    found = json.loads(json.dumps([f.to_dict() for f in _medic_findings("counts_mse")]))
    tm111 = next(f for f in found if f["code"] == "TM111")
    assert tm111["evidence"]["loss"] == "mse_loss"
    run_found = under_run("bcast_hand", True, tmp_path)
    assert "TM201" in {c for c, _ in run_found}
    doc = json.loads((tmp_path / "findings.json").read_text())
    tm201 = next(f for f in doc["findings"] if f["code"] == "TM201")
    assert tm201["evidence"]["prediction_shape"] == [32, 1] and tm201["evidence"]["result_shape"] == [32, 32]
    sentinel = next(f for f in _medic_findings("sentinel") if f.code == "TM109")
    assert sentinel.evidence["value"] == -9999.0 and sentinel.evidence["column"] == 3


def _medic_findings(case: str):
    net, loss_fn, x, y, params = build(case, True)
    opt = torch.optim.Adam(params, lr=1e-3)
    medic = Medic(net, opt, console=False)
    for i in range(3):
        xb, yb = x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32]
        loss = loss_fn(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        medic.step(loss)
    return medic.findings


def _autoencoder_findings(sentinel: bool) -> list[tuple[str, str]]:
    """sklearn's 8x8 digits, scaled to [0, 1]: most pixel columns are nearly always 0 and take a few rare
    values. A rare pixel value is not a sentinel; a -9999 in such a column is."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    pixels = load_digits().data / 16.0
    x = torch.tensor(pixels[np.random.default_rng(0).permutation(len(pixels))], dtype=torch.float32)
    if sentinel:
        x[::32, 7] = -9999.0  # column 7 is 0 in 96 % of the rows and takes 10 other values
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 64))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    medic = Medic(net, opt, console=False)
    for i in range(6):
        xb = x[i * 256:(i + 1) * 256]
        loss = torch.nn.functional.mse_loss(net(xb), xb.clamp(0, 1))
        opt.zero_grad()
        loss.backward()
        medic.step(loss)
    return [(f.code, f.severity) for f in medic.findings]


def test_sparse_pixel_columns_are_not_sentinels_but_a_sentinel_in_one_is():
    assert "TM109" not in {c for c, _ in _autoencoder_findings(False)}
    assert "TM109" in {c for c, _ in _autoencoder_findings(True)}


def _full_batch_findings(outlier_rows: int) -> list:
    """A full-batch loop (every step sees the same 300 rows, as L-BFGS or Rprop loops do) on standardized
    features where ``outlier_rows`` rows hold 60 in column 3 (a real, isolated value, not a code)."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g)
    x[:outlier_rows, 3] = 60.0
    y = (x[:, 0] > 0).float()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.Rprop(net.parameters(), lr=0.01)
    medic = Medic(net, opt, console=False, loss_fn=lambda out, t: bce(out.squeeze(1), t))
    for _ in range(6):
        loss = bce(net(x).squeeze(1), y)
        opt.zero_grad()
        loss.backward()
        medic.step(loss, batch=(x, y))
    return [f for f in medic.findings if f.code == "TM109"]


def test_one_outlier_row_seen_at_every_full_batch_step_is_not_a_repeated_sentinel():
    # benchmarks/fresh3 rprop_breast: one row, seen on the three sampled steps, read as "repeated 3 times"
    assert _full_batch_findings(1) == []
    found = _full_batch_findings(3)  # three distinct rows holding it: the repeated value TM109 is about
    assert len(found) == 1 and found[0].evidence["count"] == 3 and found[0].evidence["value"] == 60.0
