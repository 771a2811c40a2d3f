"""`trainmedic run` under torchrun: two CPU processes on gloo agree on every verdict; rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

SCRIPT = Path(__file__).resolve().parent / "run_scripts" / "ddp_nan.py"
NAN_STEP = 12

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


def test_nan_on_one_rank_is_skipped_by_both(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "RESULT_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "trainmedic", "run", "--heal", "--out", str(tmp_path / "out"), str(SCRIPT)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    results = {r: json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1)}
    assert set(results) == {0, 1}
    for res in results.values():
        # both ranks skipped exactly the step where rank 1 alone saw a NaN, and applied every other one
        assert [i for i, a in enumerate(res["applied"]) if not a] == [NAN_STEP]
        assert all(res["identical"]) and res["finite"]
    found = json.loads((tmp_path / "out" / "findings.json").read_text())["findings"]
    assert [(f["code"], f["step"], f["action"]) for f in found] == [("TM301", NAN_STEP, "step skipped")]
    # rank 0 alone writes the report and prints the summary
    assert r.stderr.count("trainmedic: report") == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["events.jsonl", "findings.json", "report.html"]
