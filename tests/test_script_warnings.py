"""The script's own warnings look as they do without trainmedic: named at the script's line, shown once per
location. PyTorch's ``mse_loss`` warns (``stacklevel=2``) when a (B,1) prediction meets a (B,) target.

Two things used to differ: under ``trainmedic run`` the warning named trainmedic's loss wrapper as its
location (the wrapper was the loss function's caller), and both under ``run`` and ``Medic`` it was printed
again after every step the live checks looked at (``warnings.catch_warnings`` resets every module's record
of warnings already shown).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import torch
from torch.nn import functional as F

from trainmedic import Medic

SCRIPT = Path(__file__).resolve().parent / "run_scripts" / "warns.py"
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"} | {"OMP_NUM_THREADS": "1"}


def _stderr(*cmd: str, cwd: Path) -> str:
    p = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stderr


def test_run_shows_the_scripts_warnings_as_python_does(tmp_path):
    plain = _stderr(str(SCRIPT), cwd=tmp_path)
    under = _stderr("-m", "trainmedic", "run", "--quiet", "--out", str(tmp_path / "o"), str(SCRIPT), cwd=tmp_path)
    assert "warns.py:13: UserWarning: Using a target size" in plain  # the script's line, once
    ours = [line for line in under.splitlines() if line.startswith(("trainmedic:", "  TM", "      fix:"))]
    assert [line for line in under.splitlines() if line not in ours] == plain.splitlines()
    assert "TM201" in under  # and trainmedic saw the broadcast


def test_medic_live_checks_do_not_repeat_a_warning_already_shown():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    medic = Medic(model, opt, console=False)
    x, y = torch.randn(64, 4), torch.randn(64)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        for _ in range(8):  # the live checks look at the first steps
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            medic.step(loss)
    broadcast = [w for w in seen if "target size" in str(w.message)]
    assert len(broadcast) == 1 and broadcast[0].filename == __file__
    assert "TM201" in {f.code for f in medic.findings}
