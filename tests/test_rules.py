import subprocess
import sys

import pytest

from trainmedic.rules import all_rules, get_rule

CATALOGUE = [f"TM{n}" for n in (
    *range(101, 116), *range(201, 212), *range(301, 316))]


def test_every_rule_has_full_documentation():
    for r in all_rules():
        assert r.code.startswith("TM") and len(r.code) == 5
        assert r.name and r.name == r.name.lower()
        for part in (r.summary, r.what, r.why, r.fix):
            assert part.strip(), f"{r.code} lacks documentation"


def test_names_are_unique():
    names = [r.name for r in all_rules()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("code", [c for c in CATALOGUE if c.startswith("TM3") and c != "TM313"])
def test_runtime_codes_registered(code):
    assert get_rule(code).code == code


def test_lookup_by_name_and_case():
    assert get_rule("tm306").name == "loss-spike"
    assert get_rule("loss-spike").code == "TM306"
    with pytest.raises(KeyError):
        get_rule("TM999")


def test_explain_cli_prints_docs():
    out = subprocess.run([sys.executable, "-m", "trainmedic", "explain", "TM306"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "TM306 loss-spike (error)" in out.stdout
    for title in ("What it means", "Why it happens", "How to fix it", "Example"):
        assert title in out.stdout


def test_explain_unknown_code_is_one_line_error():
    out = subprocess.run([sys.executable, "-m", "trainmedic", "explain", "TM999"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "explain --list" in out.stderr
    assert "Traceback" not in out.stderr
