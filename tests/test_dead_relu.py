"""TM311 dead-relu-training reaches every front end: Medic, `trainmedic run`, Lightning and Hugging Face.

The same tiny ReLU regression in each: one batch of -9999 sentinel labels per epoch throws the hidden
layer's biases so far negative that every unit stays off. The healthy twin (no sentinel) stays quiet.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from trainmedic import Medic
from trainmedic.instrument.runner import run_script

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
SCRIPT = Path(__file__).resolve().parent / "run_scripts" / "dead_relu.py"
BATCH, ROWS, EPOCHS = 32, 3200, 4


def data(sentinel: bool):
    torch.manual_seed(0)
    x = torch.rand(ROWS, 8) * 2
    y = x.sum(1, keepdim=True)
    if sentinel:
        y[50 * BATCH:51 * BATCH] = -9999.0
    return x, y


def net():
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))


def dead_findings(findings) -> list:
    return [f for f in findings if f.code == "TM311"]


def warnings_of(findings) -> list[str]:
    return [f.code for f in findings if f.severity in ("warning", "error")]


def test_medic(tmp_path):
    for sentinel in (True, False):
        x, y = data(sentinel)
        model = net()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        medic = Medic(model, opt, console=False)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
        for _ in range(EPOCHS):
            for xb, yb in loader:
                loss = torch.nn.functional.mse_loss(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                medic.step(loss)
            medic.end_epoch()
        if sentinel:
            (f,) = dead_findings(medic.findings)
            assert f.evidence["layer"] == "1" and f.evidence["dead_fraction"] == 1.0
            assert f.step == 3 * medic.cfg.activation_every - 1  # the third sampled batch in a row
            with torch.no_grad():
                assert not (model[1](model[0](x)) > 0).any(dim=0).all()  # the units really are dead
        else:
            assert warnings_of(medic.findings) == []


def test_run(tmp_path):
    import contextlib
    import io

    for argv, out in ((["--sentinel"], tmp_path / "bad"), ([], tmp_path / "good")):
        with contextlib.redirect_stdout(io.StringIO()):
            assert run_script(str(SCRIPT), argv, out=out, console=False, summary=False) == 0
        found = json.loads((out / "findings.json").read_text())["findings"]
        if argv:
            assert [f["evidence"]["layer"] for f in found if f["code"] == "TM311"] == ["1"]
        else:
            assert [f["code"] for f in found if f["severity"] in ("warning", "error")] == []


def test_lightning(tmp_path):
    try:
        import lightning.pytorch as pl
    except ImportError:
        pl = pytest.importorskip("pytorch_lightning")
    from trainmedic.integrations.lightning import MedicCallback

    class Regressor(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    for sentinel in (True, False):
        pl.seed_everything(0, verbose=False)
        x, y = data(sentinel)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
        cb = MedicCallback(out=tmp_path / f"lightning{sentinel}", console=False)
        trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             callbacks=[cb], default_root_dir=tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(Regressor(), loader)
        if sentinel:
            assert [f.evidence["layer"] for f in dead_findings(cb.findings)] == ["net.1"]
        else:
            assert warnings_of(cb.findings) == []


def test_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from trainmedic.integrations.transformers import MedicCallback

    transformers.logging.set_verbosity_error()

    class Regressor(torch.nn.Module):  # the Trainer trains any module that returns a loss
        def __init__(self):
            super().__init__()
            self.net = net()

        def forward(self, x, labels=None):
            pred = self.net(x)
            return {"loss": torch.nn.functional.mse_loss(pred, labels), "logits": pred}

    for sentinel in (True, False):
        x, y = data(sentinel)
        rows = [{"x": x[i], "labels": y[i]} for i in range(ROWS)]
        model = Regressor()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / "hf"), per_device_train_batch_size=BATCH, num_train_epochs=EPOCHS,
            max_grad_norm=0.0, save_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True,
            use_cpu=True, seed=0, dataloader_num_workers=0)
        cb = MedicCallback(out=tmp_path / f"hf{sentinel}", console=False)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=rows, callbacks=[cb],
                                       optimizers=(opt, None))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train()
        if sentinel:
            assert [f.evidence["layer"] for f in dead_findings(cb.findings)] == ["net.1"]
        else:
            assert warnings_of(cb.findings) == []
