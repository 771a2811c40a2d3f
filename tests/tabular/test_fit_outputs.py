"""What `fit` promises about its output folder and its console: checked before the work, all-or-nothing,
no stale files, progress lines in a pipe, one clear line on a bad seed, severities as `explain --list`."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tabular_helpers import synthetic

from trainmedic.cli import main
from trainmedic.rules.registry import get_rule

FAST = ["--fast", "--epochs", "4", "--folds", "3"]


def write(tmp_path, name, df):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return str(p)


def one_line_error(err):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("trainmedic: error: ") and "Traceback" not in err, err
    return lines[0]


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_out_under_a_file_is_refused_before_any_work(tmp_path, capsys):
    data = write(tmp_path, "t.csv", synthetic(120))
    blocker = tmp_path / "file.csv"
    blocker.write_text("a,b\n1,2\n")
    code = main(["fit", data, "--target", "y", "--out", str(blocker / "sub"), *FAST])
    _, err = capsys.readouterr()
    assert code == 2
    line = one_line_error(err)  # no progress line either: nothing was trained
    assert "file.csv" in line and "is a file" in line
    assert blocker.read_text() == "a,b\n1,2\n"


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    data = write(tmp_path, "t.csv", synthetic(120))
    code = main(["fit", data, "--target", "y", "--out", data, *FAST])
    _, err = capsys.readouterr()
    assert code == 2 and "not a directory" in one_line_error(err)


@pytest.mark.parametrize("seed", ["-1", str(2**31)])
def test_bad_seed_is_one_line(tmp_path, capsys, seed):
    data = write(tmp_path, "t.csv", synthetic(120))
    out = tmp_path / "out"
    code = main(["fit", data, "--target", "y", "--out", str(out), "--seed", seed, *FAST])
    _, err = capsys.readouterr()
    assert code == 2 and "--seed" in one_line_error(err) and seed in err
    assert not out.exists()


def test_previous_fit_files_are_replaced_not_left_beside(tmp_path, capsys):
    df = synthetic(150)
    train = write(tmp_path, "t.csv", df)
    test = write(tmp_path, "test.csv", synthetic(30, seed=1).drop(columns=["y"]))
    out = tmp_path / "out"
    assert main(["fit", train, "--target", "y", "--test", test, "--out", str(out), *FAST, "--quiet",
                 "--models", "linear"]) == 0
    assert (out / "submission.csv").is_file()
    (out / "my-notes.txt").write_text("mine")
    first_cv = json.loads((out / "cv.json").read_text())
    assert main(["fit", train, "--target", "y", "--out", str(out), *FAST, "--quiet", "--models", "lightgbm"]) == 0
    capsys.readouterr()
    names = {p.name for p in out.iterdir()}
    assert names == {"cv.json", "findings.json", "report.html", "oof.json", "my-notes.txt"}  # no stale submission.csv
    cv = json.loads((out / "cv.json").read_text())
    assert list(cv["models"])[0] == "lightgbm" and list(first_cv["models"])[0] == "linear"
    assert (out / "my-notes.txt").read_text() == "mine"


def test_a_full_disk_leaves_out_as_it_was(tmp_path):
    """A real write failure, not a mocked one: the fit runs in a child process whose file-size limit
    (RLIMIT_FSIZE) is smaller than cv.json, so writing it fails with EFBIG as on a full disk."""
    train = write(tmp_path, "t.csv", synthetic(120))
    out = tmp_path / "out"
    out.mkdir()
    (out / "cv.json").write_text('{"old": true}')
    (out / "submission.csv").write_text("id,y\n1,2\n")
    before = snapshot(out)
    child = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
        from trainmedic.cli import main
        sys.exit(main({["fit", train, "--target", "y", "--out", str(out), *FAST, "--quiet", "--models", "linear"]!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc.stderr)
    assert "could not write" in line and "left as it was" in line
    assert snapshot(out) == before  # same names (no staging folder left), same bytes


def test_full_disk_on_a_new_out_leaves_nothing(tmp_path):
    train = write(tmp_path, "t.csv", synthetic(120))
    out = tmp_path / "new" / "out"
    child = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
        from trainmedic.cli import main
        sys.exit(main({["fit", train, "--target", "y", "--out", str(out), *FAST, "--quiet", "--models", "linear"]!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 2 and "could not write" in one_line_error(proc.stderr)
    assert not (tmp_path / "new").exists()


def test_progress_lines_in_a_pipe(tmp_path, capsys):
    data = write(tmp_path, "t.csv", synthetic(150))
    code = main(["fit", data, "--target", "y", "--out", str(tmp_path / "o"), *FAST, "--models", "lightgbm,linear"])
    out, err = capsys.readouterr()
    assert code == 0
    lines = [ln for ln in err.splitlines() if ln.startswith("fit: ")]
    assert len(lines) == 3 * 2, err  # one per (fold, model)
    assert lines[0].startswith("fit: fold 1/3 lightgbm done in ") and "elapsed" in lines[0]
    assert "linear not timed yet" in lines[0]
    assert "not timed yet" not in lines[2] and "left" in lines[2]
    assert lines[-1].startswith("fit: fold 3/3 linear done in ") and lines[-1].endswith("about 0 s left")
    assert "fit: " not in out  # progress goes to stderr only
    code = main(["fit", data, "--target", "y", "--out", str(tmp_path / "o"), *FAST, "--quiet"])
    assert code == 0 and "fit: " not in capsys.readouterr().err


def test_mlp_schedule_events_are_heal_events_and_severities_match_explain(tmp_path, capsys):
    """Fit's early stopping and plateau lr cuts (TM308/TM309/TM316) are the MLP's heal events, drawn on its
    curves; whatever is a finding carries the severity `trainmedic explain --list` gives its rule."""
    data = write(tmp_path, "t.csv", synthetic(300))
    out = tmp_path / "o"
    code = main(["fit", data, "--target", "y", "--out", str(out), "--folds", "3", "--epochs", "120",
                 "--models", "mlp", "--quiet"])
    assert code == 0
    cv = json.loads((out / "cv.json").read_text())
    mlp = cv["models"]["mlp"]
    assert len(mlp["curves"]) == 3 and len(mlp["heal_events"]) == 3
    for curve, epochs in zip(mlp["curves"], mlp["epochs"], strict=True):
        assert len(curve["train"]) == len(curve["val"]) == epochs[0]
    events = [e for fold in mlp["heal_events"] for e in fold]
    assert {"TM308", "TM309", "TM316"} & {e["code"] for e in events}  # the schedule acted ...
    assert all(e["epoch"] >= 1 and e["action"] for e in events)
    findings = json.loads((out / "findings.json").read_text())["findings"]
    assert not {"TM308", "TM309", "TM316"} & {f["code"] for f in findings}  # ... and is not a problem
    for f in findings:
        if f["code"].startswith(("TM2", "TM3")):
            assert f["severity"] == get_rule(f["code"]).severity, f
