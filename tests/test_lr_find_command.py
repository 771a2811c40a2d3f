"""``trainmedic lr-find``: the range test of an unmodified script's own model, optimizer, batches and loss."""

from __future__ import annotations

import contextlib
import io
import json
import math
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainmedic.cli import main

SCRIPTS = Path(__file__).parent / "run_scripts"
REGRESSION = str(SCRIPTS / "lr_regression.py")
SHORT = str(SCRIPTS / "lr_short.py")


def best_grid_rate(loop: str) -> float:
    """The constant rate that trains the tiny regression best in 7 epochs (112 steps), measured here by
    running the script itself at each rate of a grid."""
    final = {}
    for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1):
        saved = sys.argv
        sys.argv = [REGRESSION, "--loop", loop, "--lr", str(lr), "--epochs", "7"]
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                runpy.run_path(REGRESSION, run_name="__main__")
        finally:
            sys.argv = saved
        loss = float(buf.getvalue().strip().splitlines()[-1].split()[-1])
        final[lr] = loss if math.isfinite(loss) else math.inf
    return min(final, key=final.get)


@pytest.mark.parametrize("loop", ["loader", "plain"])
def test_suggestion_is_near_the_best_constant_rate_and_files_are_written(loop, tmp_path, capsys):
    out = tmp_path / "lf"
    code = main(["lr-find", "--out", str(out), "--json", REGRESSION, "--loop", loop, "--lr", "0.01"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert all(line.startswith("epoch ") for line in lines[:-1])  # the script's own output, nothing else
    doc = json.loads(lines[-1])
    assert doc == json.loads((out / "lr_find.json").read_text())
    best = best_grid_rate(loop)
    assert best / 10 <= doc["suggestion"] <= best * 3, (doc["suggestion"], best)
    assert doc["optimizer"] == "SGD" and doc["model"] == "Sequential" and doc["configured_lr"] == 0.01
    assert doc["stopped_early"] and doc["lr_diverged"] > doc["suggestion"]  # SGD+momentum blows up below 10
    ratios = [b / a for a, b in zip(doc["lrs"], doc["lrs"][1:])]
    assert max(ratios) / min(ratios) < 1 + 1e-9  # exponential
    assert doc["findings"] == []  # 0.01 is a good rate for this problem
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "lr_find.html").read_text()
    assert "data:image/png;base64," in page and f"{doc['suggestion']:.3g}" in page
    assert "suggested lr" in captured.err and "<- suggested" in captured.err


def test_a_rate_far_too_low_gets_tm209(tmp_path, capsys):
    code = main(["lr-find", "--out", str(tmp_path), REGRESSION, "--loop", "plain", "--lr", "1e-5"])
    err = capsys.readouterr().err
    assert code == 0
    doc = json.loads((tmp_path / "lr_find.json").read_text())
    assert [f["code"] for f in doc["findings"]] == ["TM209"]
    assert "TM209: the learning rate 1e-05" in err and "below" in err


def test_script_that_never_steps_an_optimizer_is_one_line(tmp_path, capsys):
    out = tmp_path / "lf"
    code = main(["lr-find", "--out", str(out), REGRESSION, "--loop", "none", "--epochs", "2"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.splitlines() == ["epoch 0 loss 3.4879", "epoch 1 loss 3.4879"]
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "never stepped an optimizer" in err[0]
    assert not out.exists()


def test_the_script_sees_its_weights_as_before_the_sweep(tmp_path, capsys):
    """The sweep ends the script from inside optimizer.step(); its finally block saves the model: the weights
    it saves are the ones it started with, not the swept ones."""
    saved = tmp_path / "w.pt"
    code = main(["lr-find", "--out", str(tmp_path / "lf"), "--steps", "40", SHORT, "--steps", "1000",
                 "--save", str(saved)])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "lf" / "lr_find.json").read_text())
    assert doc["script_ended"] == "swept" and len(doc["lrs"]) <= 40 and doc["optimizer"] == "Adam"
    torch.manual_seed(0)
    fresh = torch.nn.Linear(4, 1).state_dict()
    got = torch.load(saved, weights_only=True)
    assert all(torch.equal(fresh[k], got[k]) for k in fresh)


def test_exit_status_and_one_line_errors(tmp_path, capsys):
    # too few steps before the script ends
    assert main(["lr-find", "--out", str(tmp_path / "a"), SHORT, "--steps", "3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "only 3 time(s)" in err[0] and "at least 5" in err[0]
    # the script's own error after 30 steps: its traceback, then the curve measured until then, which stops
    # at 1.6e-5, long before the loss rises: no minimum, no suggestion
    assert main(["lr-find", "--out", str(tmp_path / "b"), SHORT, "--steps", "30", "--fail"]) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: the script's own error" in err and "ended after 30 of 100 steps" in err
    assert "no suggestion: the script ended after 30 of 100 steps" in err and "--steps 30 or fewer" in err
    doc = json.loads((tmp_path / "b" / "lr_find.json").read_text())
    assert doc["swept_to_the_end"] is False and doc["suggestion"] is None and len(doc["lrs"]) == 30
    # the same script, swept over its 30 steps: the whole range, a suggestion
    assert main(["lr-find", "--out", str(tmp_path / "c"), "--steps", "30", SHORT, "--steps", "30"]) == 0
    assert json.loads((tmp_path / "c" / "lr_find.json").read_text())["suggestion"] is not None
    assert "(all steps taken)" in capsys.readouterr().err
    # usage errors: one line, exit 2, nothing run
    for argv in (["--steps", "3", SHORT], ["--start-lr", "1", "--end-lr", "0.1", SHORT],
                 [str(tmp_path / "missing.py")]):
        assert main(["lr-find", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("trainmedic: error:")


def test_cli_keeps_stdout_for_the_script(tmp_path):
    """As a subprocess: stdout holds the script's lines only, trainmedic's lines are all on stderr."""
    p = subprocess.run([sys.executable, "-m", "trainmedic", "lr-find", "--out", str(tmp_path), REGRESSION,
                        "--loop", "plain"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout and all(line.startswith("epoch ") for line in p.stdout.splitlines())
    assert "trainmedic lr-find:" in p.stderr and "suggested lr" in p.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["lr_find.html", "lr_find.json", "lr_find.png"]


def test_closure_steps_are_not_swept_and_say_so(tmp_path, capsys):
    code = main(["lr-find", "--out", str(tmp_path / "lf"), str(SCRIPTS / "lbfgs.py")])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""  # stopped at its first step, before it printed anything
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "LBFGS.step(closure)" in err[0]
    assert not (tmp_path / "lf").exists()


def test_a_nan_from_the_script_before_any_learning_gives_no_suggestion(tmp_path, capsys):
    """two_optimizers.py multiplies its discriminator loss by NaN at step 20: at 4e-6 the curve has neither
    dropped nor risen, so the NaN says nothing about the rate (and the GAN's second optimizer is left alone)."""
    code = main(["lr-find", "--out", str(tmp_path), str(SCRIPTS / "two_optimizers.py")])
    err = capsys.readouterr().err
    assert code == 1
    doc = json.loads((tmp_path / "lr_find.json").read_text())
    assert doc["suggestion"] is None and doc["findings"] == [] and len(doc["lrs"]) == 21
    assert doc["other_optimizers"] == 1 and doc["optimizer"] == "SGD"
    assert "than from the rate" in doc["no_suggestion"] and "no suggestion: the loss turned nan at step 21" in err
    assert "TM209" not in err and "1 other optimizer(s) kept their own rate" in err


def test_nothing_of_the_sweep_stays_installed(tmp_path, capsys):
    import torch.optim.optimizer as opt_mod
    from torch.nn.modules import module as module_mod

    backward, autograd_backward = torch.Tensor.backward, torch.autograd.backward
    pre_hooks = dict(opt_mod._global_optimizer_pre_hooks)
    forward_hooks = dict(module_mod._global_forward_pre_hooks)
    assert main(["lr-find", "--out", str(tmp_path), "--steps", "20", SHORT, "--steps", "50"]) == 0
    assert torch.Tensor.backward is backward and torch.autograd.backward is autograd_backward
    assert dict(opt_mod._global_optimizer_pre_hooks) == pre_hooks
    assert dict(module_mod._global_forward_pre_hooks) == forward_hooks


def test_a_nan_while_the_curve_still_descends_gives_no_suggestion(tmp_path, capsys):
    """custom_opt.py's optimizer ignores param_groups (it trains at its own 0.05) and its batch 30 holds a
    NaN: the curve ends at its lowest point, so there is no minimum to read."""
    assert main(["lr-find", "--out", str(tmp_path), str(SCRIPTS / "custom_opt.py")]) == 1
    err = capsys.readouterr().err
    assert "no suggestion: the loss turned nan at step 31" in err and "still at its lowest" in err
    assert json.loads((tmp_path / "lr_find.json").read_text())["suggestion"] is None
