"""resume() when no checkpoint in the directory can be used: TM323 says the run starts fresh (issue 13)."""

from __future__ import annotations

import torch
from test_checkpoint import _train  # the same deterministic training loop

from trainmedic import Medic
from trainmedic.cli import main
from trainmedic.heal import checkpoint as ck


def _model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    return model, torch.optim.Adam(model.parameters(), lr=1e-2)


def _write_three(directory):
    model, opt = _model()
    medic = Medic(model, opt, console=False, checkpoint_dir=directory, every=5, keep=5)
    _train(medic, model, opt, 15)
    return [i.path for i in ck.list_checkpoints(directory)]


def _codes(medic):
    return [f.code for f in medic.findings]


def test_every_checkpoint_corrupt_gives_tm323_and_a_fresh_start(tmp_path):
    paths = _write_three(tmp_path)
    assert len(paths) == 3
    paths[0].write_bytes(paths[0].read_bytes()[:100])  # truncated
    paths[1].write_bytes(b"garbage" * 50)  # replaced
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit flipped

    model, opt = _model()
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    medic = Medic(model, opt, console=False, checkpoint_dir=tmp_path, every=5)
    assert medic.resume() is None
    assert medic.step_count == 0 and all(torch.equal(fresh[k], v) for k, v in model.state_dict().items())
    assert sorted(_codes(medic)) == ["TM320", "TM320", "TM320", "TM323"]
    f = next(f for f in medic.findings if f.code == "TM323")
    assert f.severity == "error" and "starts fresh from step 0" in f.message and str(tmp_path) in f.message
    assert sorted(f.evidence["files"]) == sorted(p.name for p in paths)
    assert all(why.startswith("TM320:") for why in f.evidence["files"].values())
    assert f.action == "no usable checkpoint: starting fresh"
    # the run goes on from step 0 and writes new checkpoints beside the set-aside ones
    _train(medic, model, opt, 5)
    assert medic.step_count == 5 and [i.step for i in ck.list_checkpoints(tmp_path)] == [5]


def test_checkpoints_without_sidecars_are_named(tmp_path):
    paths = _write_three(tmp_path)
    for p in paths:
        ck.sidecar_path(p).unlink()  # copied without their .json
    model, opt = _model()
    medic = Medic(model, opt, console=False, checkpoint_dir=tmp_path, every=5)
    assert medic.resume() is None
    assert _codes(medic) == ["TM323"]
    files = medic.findings[0].evidence["files"]
    assert sorted(files) == sorted(p.name for p in paths) and all("no sidecar" in w for w in files.values())


def test_files_set_aside_by_an_earlier_resume_still_count(tmp_path):
    paths = _write_three(tmp_path)
    for p in paths:
        p.write_bytes(b"x")
    first = Medic(*_model(), console=False, checkpoint_dir=tmp_path, every=5)
    assert first.resume() is None and "TM323" in _codes(first)
    second = Medic(*_model(), console=False, checkpoint_dir=tmp_path, every=5)  # the run died again at once
    assert second.resume() is None and _codes(second) == ["TM323"]
    files = second.findings[0].evidence["files"]
    assert sorted(files) == sorted(p.name + ".corrupt" for p in paths)
    assert all("earlier resume" in w for w in files.values())


def test_an_empty_directory_is_a_first_run_without_findings(tmp_path):
    medic = Medic(*_model(), console=False, checkpoint_dir=tmp_path / "new", every=5)
    assert medic.resume() is None and medic.findings == []


def test_one_good_checkpoint_left_is_no_tm323(tmp_path):
    paths = _write_three(tmp_path)
    for p in paths[1:]:
        p.write_bytes(b"x")
    medic = Medic(*_model(), console=False, checkpoint_dir=tmp_path, every=5)
    assert medic.resume().path == paths[0] and medic.step_count == 5
    assert _codes(medic) == ["TM320", "TM320"]


def test_explain_tm323(capsys):
    assert main(["explain", "TM323"]) == 0
    assert "no-usable-checkpoint" in capsys.readouterr().out
