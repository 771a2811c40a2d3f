"""The CLI as a tool among tools: --json output, a closed pipe, one clear line on misuse; explain's notes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainmedic.cli import main
from trainmedic.rules import all_rules, get_rule
from trainmedic.rules.notes import NOTES, cited_notes

HERE = Path(__file__).parent
ENV = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"))


def _one_line_error(capsys, expected: str) -> None:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("trainmedic: error: "), captured.err
    assert expected in captured.err and "Traceback" not in captured.err


# ----------------------------------------------------------------------------------------------------
# explain: the practitioner notes, --json
# ----------------------------------------------------------------------------------------------------
def test_citations_are_found_in_the_forms_the_rule_texts_use():
    ids = [n.id for n in cited_notes(["(practitioner notes 000, 002, 003)", "Note 004: checkpoint",
                                      "notes 001 and 000", "note 002's checklist", "see note 999", "notebook 003"])]
    assert ids == ["000", "002", "003", "004", "001"]


def test_every_rule_that_cites_a_note_prints_its_title_and_gist():
    citing = 0
    for rule in all_rules():
        text = rule.render()
        notes = rule.notes()
        assert ("Practitioner notes" in text) == bool(notes), rule.code
        for note in notes:
            citing += 1
            assert f"note {note.id}: {note.title}" in text
            assert " ".join(note.gist.split()[:6]) in " ".join(text.split())
    assert citing >= 20  # most rules stand on a note; a regression in the parser would drop them all
    assert [n.id for n in get_rule("TM306").notes()] == ["004"]


def test_gists_are_two_to_four_lines_of_plain_english():
    import textwrap

    assert sorted(NOTES) == ["000", "001", "002", "003", "004"]
    for note in NOTES.values():
        assert 2 <= len(textwrap.wrap(note.gist, 96)) <= 4, note.id
        assert note.gist.isascii() and note.title.isascii()


def test_explain_json_and_list_json(capsys):
    assert main(["explain", "TM306", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["code"] == "TM306" and doc["name"] == "loss-spike" and doc["severity"] in ("error", "warning")
    assert doc["what"] and doc["fix"] and doc["notes"][0]["id"] == "004" and doc["notes"][0]["gist"]
    assert main(["explain", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["rules"]
    assert [r["code"] for r in listed] == [r.code for r in all_rules()]
    assert all(set(r) == {"code", "name", "severity", "severities", "family", "summary"} for r in listed)
    assert next(r for r in listed if r["code"] == "TM114")["severities"] == ["error", "warning"]


def test_explain_list_starts_with_the_first_family(capsys):
    assert main(["explain", "--list"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "data"


def test_explain_unknown_code_is_one_line(capsys):
    assert main(["explain", "TM999"]) == 2
    _one_line_error(capsys, "unknown rule code 'TM999'")


# ----------------------------------------------------------------------------------------------------
# a closed pipe
# ----------------------------------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="SIGPIPE")
def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`trainmedic explain --list | head -0`: the reader is gone before the first write."""
    proc = subprocess.Popen([sys.executable, "-m", "trainmedic", "explain", "--list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV)
    proc.stdout.close()  # before the child writes anything (it is still importing)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err  # 128 + SIGPIPE, as `seq 1 100000 | head -1` gives
    assert err == ""
    shell = subprocess.run(["bash", "-c", f"'{sys.executable}' -m trainmedic explain --list --json | head -c 20"],
                           capture_output=True, text=True, env=ENV, timeout=120)
    assert shell.stdout == '{\n "version": 1,\n "r' and shell.stderr == ""


# ----------------------------------------------------------------------------------------------------
# report --json and misuse
# ----------------------------------------------------------------------------------------------------
def _run_dir(out: Path) -> Path:
    out.mkdir()
    findings = [{"code": "TM301", "name": "nonfinite-loss", "severity": "error", "step": 5, "epoch": 0,
                 "message": "loss is nan", "evidence": {"count": 2}, "action": "step skipped"}]
    (out / "findings.json").write_text(json.dumps({"version": 1, "findings": findings}))
    events = [{"type": "meta", "version": 1, "mode": "heal", "steps": 10}]
    events += [{"type": "sample", "step": s, "loss": 1.0 / (s + 1), "grad_norm": 1.0, "lr": 0.1} for s in range(10)]
    (out / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events) + '{"type": "act')
    return out


def test_report_json_prints_the_findings_and_notes(tmp_path, capsys):
    out = _run_dir(tmp_path / "run")
    assert main(["report", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["report"] == str(out / "report.html") and (out / "report.html").is_file()
    assert doc["findings"] == json.loads((out / "findings.json").read_text())["findings"]
    assert len(doc["notes"]) == 1 and "middle of a line" in doc["notes"][0]


@pytest.mark.parametrize("argv, expected", [
    (["report", "{tmp}/missing"], "no such directory"),
    (["report", "{tmp}"], "holds none of events.jsonl"),
    (["report", "{tmp}/file"], "is a file, not a directory"),
    (["report", "{run}", "-o", "{tmp}/file/report.html"], "cannot write"),
    (["report"], "the following arguments are required: DIR"),
    (["explain", "TM306", "--bogus"], "unrecognized arguments: --bogus"),
    (["demo", "--cases", "no_such_case"], "unknown zoo case no_such_case; the cases are: lr_too_high"),
    (["demo", "--out", "{tmp}/file"], "is a file"),
    (["demo", "--out", "{tmp}/file/sub", "--cases", "healthy_plain"], "cannot write the reports"),
    (["run", "{tmp}/missing.py"], "no such script"),
    (["no-such-command"], "invalid choice: 'no-such-command'"),
])
def test_misuse_ends_in_one_clear_line_and_exit_2(argv, expected, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    run = _run_dir(tmp_path / "run")
    argv = [a.format(tmp=tmp_path, run=run) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors exit from parse_args
        rc = exc.code
    assert rc == 2
    _one_line_error(capsys, expected)
