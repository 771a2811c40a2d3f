"""TM313 under ``trainmedic run --heal`` names dirty rows by their dataset index, read off the DataLoader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from trainmedic.instrument.runner import run_script
from trainmedic.instrument.session import Session

SCRIPT = str(Path(__file__).parent / "run_scripts" / "dirty_loader.py")
BAD = [37, 150, 301]


def _tm313(out: Path) -> dict:
    findings = json.loads((out / "findings.json").read_text())["findings"]
    return next(f for f in findings if f["code"] == "TM313")


def _quarantines(out: Path) -> list[dict]:
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    return [e for e in events if e.get("type") == "action" and e.get("action") == "quarantine"]


@pytest.mark.parametrize("workers", [0, 2])
def test_dirty_rows_are_named_by_dataset_index_with_a_shuffled_loader(tmp_path, capsys, workers):
    out = tmp_path / "run"
    code = run_script(SCRIPT, ["--workers", str(workers)], out=out, heal=True, console=False, summary=False)
    assert code == 0
    assert capsys.readouterr().out.splitlines()[-1] == "finite weights: True"
    f = _tm313(out)
    assert sorted(f["evidence"]["rows"]) == BAD and f["evidence"]["named_by"] == "dataset index"
    assert "dataset rows" in f["message"] and all(str(i) in f["message"] for i in BAD)
    q = _quarantines(out)
    assert sorted(i for a in q for i in a["rows"]) == BAD and all(a["named_by"] == "dataset index" for a in q)
    page = (out / "report.html").read_text()
    assert "quarantined samples" in page and "150" in page


def test_a_batch_changed_before_the_model_falls_back_to_content_hashes_and_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_script(SCRIPT, ["--transform", "--epochs", "1"], out=out, heal=True, console=False,
                      summary=False) == 0
    f = _tm313(out)
    rows = f["evidence"].get("rows") or f["evidence"]["hashes"]
    assert all(str(r).startswith("sha1:") for r in rows) and len(rows) == len(BAD)
    assert "content hash" in f["message"] and "no dataset indices" in f["message"]


def _indexed_loader(**kw) -> DataLoader:
    n = 100
    return DataLoader(TensorDataset(torch.arange(n).float().unsqueeze(1) * 10, torch.arange(n)), batch_size=8,
                      shuffle=True, generator=torch.Generator().manual_seed(0), **kw)


@pytest.mark.parametrize("kw", [{}, {"num_workers": 2}, {"num_workers": 2, "persistent_workers": True}])
def test_each_batch_gets_the_indices_of_its_rows(kw):
    """The dataset's target is its own index: the recorded indices must be exactly the batch's targets,
    with worker processes prefetching ahead, a persistent iterator, and an epoch left early."""
    from torch.utils.data import BatchSampler, dataloader

    classes = (BatchSampler, dataloader._SingleProcessDataLoaderIter, dataloader._MultiProcessingDataLoaderIter)
    before = [(c.__dict__.get("__iter__"), c.__dict__.get("__next__")) for c in classes]
    loader = _indexed_loader(**kw)
    session = Session(console=False)
    session.install()
    try:
        checked = 0
        for epoch in range(3):
            for i, (xb, yb) in enumerate(loader):
                idx = session.indices.lookup(xb, yb)
                assert idx is not None and torch.equal(idx, yb)
                assert session.indices.lookup(xb * 1.0) is None  # a changed copy is not taken for the batch
                # moved to another device (here "meta", standing in for x.to("cuda")): the same rows
                assert torch.equal(session.indices.lookup(xb.to("meta")), yb)
                checked += 1
                if epoch == 1 and i == 3:
                    break  # leave the epoch early: the next one starts a fresh queue
        assert checked == 13 + 4 + 13
    finally:
        session.uninstall()
    # every wrapper is gone: the classes hold exactly what they held before (inherited ones not pinned)
    assert [(c.__dict__.get("__iter__"), c.__dict__.get("__next__")) for c in classes] == before
