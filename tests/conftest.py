import os
from pathlib import Path

import pytest
import torch

# Two cores, several test files training models: one thread each keeps timings stable.
torch.set_num_threads(1)
os.environ.setdefault("TRAINMEDIC_NO_LIVE", "1")


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _no_report_in_the_checkout():
    """A callback's default report folder is the working directory: a test that forgets ``out=`` would leave
    ``trainmedic/`` in the repository (it happened twice). Fail the session instead."""
    before = (ROOT / "trainmedic").exists()
    yield
    assert before or not (ROOT / "trainmedic").exists(), "a test wrote trainmedic/ into the checkout: pass out="


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _one_thread():
    """Some libraries (Lightning, transformers) change torch's thread count: every test starts at one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def drivers_at_finish(monkeypatch):
    """Each driver's (model type, steps) when a ``run`` session finishes: what the run watched, read after."""
    from trainmedic.instrument.session import Session

    seen: list[tuple[str, int]] = []
    original = Session.finish

    def keep(self, *args, **kwargs):
        seen[:] = [(type(d.model).__name__, d.step_count) for d in self.drivers]
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Session, "finish", keep)
    return seen
