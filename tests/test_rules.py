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


def test_every_data_finding_carries_a_severity_its_rule_declares(tmp_path):
    """`explain --list` and a finding agree: a finding's severity is the rule's or one of its declared lighter
    forms (TM103 read fine with thousands separators, TM114 that only adds unseen categories)."""
    import numpy as np
    import pandas as pd

    from trainmedic.rules import get_rule
    from trainmedic.tabular.checks import check_data

    rng = np.random.default_rng(0)
    n = 400
    train = pd.DataFrame({"area": [f"{v:,}" for v in rng.integers(1000, 90000, n)],
                          "kind": rng.choice(["a", "b"], n), "x": rng.normal(size=n)})
    train["y"] = rng.normal(size=n)
    test = train.drop(columns="y").head(50).copy()
    test.loc[:4, "kind"] = "c"  # a category unseen in training
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    found = check_data(str(tmp_path / "train.csv"), target="y", test=str(tmp_path / "test.csv"))
    seen = {(f.code, f.severity) for f in found}
    assert ("TM103", "info") in seen and ("TM114", "warning") in seen, seen
    for f in found:
        assert f.severity in get_rule(f.code).severities, (f.code, f.severity)
    assert get_rule("TM103").severity_text() == "warning/info"
