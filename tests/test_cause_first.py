"""Issue 11: the first finding names the cause, not a symptom, on tiny real trainings.

* a network initialised to zero (or any constant) keeps its units identical: TM205 at the first step,
  before the dead ReLUs (TM207), dead network (TM311) or not-learning (TM317) findings it causes; a zero
  last layer, a LoRA-style zero matrix and a zero residual output break the symmetry at once and stay silent;
* a batch with a NaN row: the row (TM101) is named before the NaN loss it causes (TM301), also under a
  plain ``medic.step(loss)`` on a step no live check was observing;
* a rate the loop raised 100x: the raise (TM319) is named at the gradient explosion or NaN it causes,
  before TM303/TM301.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from test_run import SCRIPTS, findings, run_quiet
from torch import nn

import trainmedic
from trainmedic import Medic
from trainmedic.zoo._common import classification_data, mlp


def severe(fs):
    return [f for f in fs if f.severity in ("warning", "error")]


def train(model, x, y, steps, lr=1e-2, jump_at=None, jump=100.0, opt_cls=torch.optim.Adam, batch=32):
    opt = opt_cls(model.parameters(), lr=lr)
    medic = Medic(model, opt, console=False)
    n = len(x)
    for t in range(steps):
        if t == jump_at:
            for g in opt.param_groups:
                g["lr"] *= jump
        i = (t * batch) % n
        loss = F.cross_entropy(model(x[i:i + batch]), y[i:i + batch])
        opt.zero_grad()
        loss.backward()
        medic.step(loss)
    medic.close()
    return medic


def zeroed(model):
    for p in model.parameters():
        nn.init.zeros_(p)
    return model


# ---------------------------------------------------------------------------------------------------
# symmetric init (TM205)
# ---------------------------------------------------------------------------------------------------
def test_zero_init_is_named_poor_init_at_the_first_step_under_medic():
    x, y = classification_data(n=512)
    for act in (nn.ReLU, nn.Tanh, nn.Sigmoid):
        medic = train(zeroed(mlp(20, 4, hidden=32, act=act)), x, y, steps=120)
        first = severe(medic.findings)[0]
        assert (first.code, first.step) == ("TM205", 0), (act, [(f.code, f.step) for f in medic.findings])
        ev = first.evidence
        assert ev["measure"] == "identical units" and ev["init"] == "all-zero"
        assert ev["layers"][0]["parameter"] == "0.weight" and ev["layers"][0]["units"] == 32
        assert "2.weight" in [r["parameter"] for r in ev["layers"]]
        # the symmetry is real: after training every hidden unit is still the same unit
        w = medic.model[0].weight
        assert torch.equal(w, w[:1].expand_as(w))


def test_constant_hidden_layers_with_equal_biases_are_symmetric_too():
    x, y = classification_data(n=512)
    model = mlp(20, 4, hidden=32)
    for m in model:
        if isinstance(m, nn.Linear) and m.out_features == 32:
            nn.init.constant_(m.weight, 0.05)
            nn.init.zeros_(m.bias)
    nn.init.constant_(model[-1].weight, 0.05)
    medic = train(model, x, y, steps=3)
    sym = [f for f in medic.findings if f.code == "TM205"]
    assert sym and sym[0].step == 0 and sym[0].evidence["init"] == "constant"


class LoRA(nn.Module):
    """A frozen base layer plus a trained low-rank update B @ A with B zero (LoRA's init)."""

    def __init__(self) -> None:
        super().__init__()
        self.base = nn.Linear(20, 32)
        self.base.requires_grad_(False)
        self.A = nn.Linear(20, 4, bias=False)
        self.B = nn.Linear(4, 32, bias=False)
        nn.init.zeros_(self.B.weight)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        return self.head(torch.relu(self.base(x) + self.B(self.A(x))))


class ZeroResidual(nn.Module):
    """Residual blocks whose output projection starts at zero (the block starts as the identity)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(20, 32)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32)) for _ in range(2))
        for b in self.blocks:
            nn.init.zeros_(b[-1].weight)
            nn.init.zeros_(b[-1].bias)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return self.head(h)


def test_zero_last_layer_lora_and_zero_residual_branches_stay_silent():
    x, y = classification_data(n=512)
    last = mlp(20, 4, hidden=32)
    nn.init.zeros_(last[-1].weight)
    nn.init.zeros_(last[-1].bias)
    emb = nn.Sequential(nn.Embedding(50, 16), nn.Flatten(), nn.Linear(16, 4))
    nn.init.zeros_(emb[0].weight)  # rows of tokens never seen stay equal by design: embeddings are not judged
    for model in (last, LoRA(), ZeroResidual()):
        medic = train(model, x, y, steps=150)
        assert medic.findings == [], (type(model).__name__, [(f.code, f.message) for f in medic.findings])
    tokens = torch.randint(0, 50, (512, 1))
    medic = train(emb, tokens, y, steps=30)
    assert "TM205" not in {f.code for f in medic.findings}


def test_standalone_preflight_names_a_zero_init():
    x, y = classification_data(n=64)
    fs = trainmedic.preflight(zeroed(mlp(20, 4, hidden=32)), F.cross_entropy, (x, y), overfit=False)
    assert [f.evidence.get("measure") for f in fs if f.code == "TM205"] == ["identical units"]
    assert trainmedic.preflight(mlp(20, 4, hidden=32), F.cross_entropy, (x, y), overfit=False) == []


def test_zero_init_under_run_is_named_before_the_dead_relus_it_causes(tmp_path):
    code, out = run_quiet(SCRIPTS / "zero_init.py", [], tmp_path / "zero")
    assert code == 0 and out.startswith("loss")
    found = findings(tmp_path / "zero")
    first = [f for f in found if f["severity"] in ("warning", "error")][0]
    assert (first["code"], first["step"], first["evidence"]["measure"]) == ("TM205", 0, "identical units")
    assert "TM207" in {f["code"] for f in found}  # the symptom is still reported, after its cause
    code, _ = run_quiet(SCRIPTS / "zero_init.py", ["--healthy"], tmp_path / "healthy")
    assert code == 0 and findings(tmp_path / "healthy") == []


# ---------------------------------------------------------------------------------------------------
# a NaN row (TM101 before TM301)
# ---------------------------------------------------------------------------------------------------
def test_nan_row_is_named_before_the_nan_loss_on_an_unobserved_step():
    x, y = classification_data(n=640)
    x = x.clone()
    x[32 * 7 + 5, 3] = math.nan  # in the batch of step 7: not one of the steps the live checks observe
    medic = train(mlp(20, 4, hidden=32), x, y, steps=12)
    codes = [(f.code, f.step) for f in medic.findings]
    assert codes[:2] == [("TM101", 7), ("TM301", 7)], codes
    assert medic.findings[0].evidence["rows"] == [5]


# ---------------------------------------------------------------------------------------------------
# a rate the loop raised (TM319 before TM303 / TM301)
# ---------------------------------------------------------------------------------------------------
def test_a_raised_rate_is_named_at_the_explosion_it_causes():
    x, y = classification_data(n=512)
    medic = train(mlp(20, 4, hidden=64), x, y, steps=300, lr=3e-3, jump_at=160)
    fs = severe(medic.findings)
    assert fs, "a 100x raise must be found"
    first = fs[0]
    assert first.code in ("TM319", "TM305"), [(f.code, f.step) for f in fs]
    raise_findings = [f for f in fs if f.code == "TM319"]
    assert raise_findings and raise_findings[0].evidence["raised_at"] == 160
    symptoms = [f for f in fs if f.code in ("TM303", "TM301", "TM302")]
    assert all(f.step >= raise_findings[0].step for f in symptoms)


def test_a_raise_followed_by_a_nan_names_the_raise_first():
    x, y = classification_data(n=512)
    medic = train(mlp(20, 4, hidden=64), x, y, steps=200, lr=0.05, jump_at=100, jump=1e6,
                  opt_cls=torch.optim.SGD)
    codes = [(f.code, f.step) for f in severe(medic.findings)]
    nan = [s for c, s in codes if c in ("TM301", "TM302")]
    assert nan, codes
    before = [c for c, s in codes if s <= nan[0]]
    assert before[0] in ("TM319", "TM305") and "TM319" in before, codes


def test_a_raise_without_trouble_stays_silent():
    x, y = classification_data(n=512)
    medic = train(mlp(20, 4, hidden=64), x, y, steps=300, lr=1e-4, jump_at=150, jump=3.0)
    assert medic.findings == [], [(f.code, f.step, f.message) for f in medic.findings]




def test_nan_row_in_the_first_batch_under_run_is_named_at_step_zero(tmp_path):
    """`run` creates its engine at the first optimizer step: the batch of that step is the one discovery saw."""
    code, _ = run_quiet(SCRIPTS / "dirty_loader.py", ["--bad", *map(str, range(0, 400, 10)), "--epochs", "1"], tmp_path)
    assert code == 0
    found = [(f["code"], f["step"]) for f in findings(tmp_path)]
    assert found[:2] == [("TM101", 0), ("TM301", 0)], found


def test_a_sentinel_that_blows_up_the_first_steps_is_named_before_the_nan():
    """Non-finite before the first steps' sample is judged (step 2): the batches seen so far are judged then."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(640, 8, generator=g)
    y = x[:, :1] * 2 + 0.1 * torch.randn(640, 1, generator=g)
    x[::25, 1] = -9999.0
    model = mlp(8, 1, hidden=32)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    medic = Medic(model, opt, console=False)
    for t in range(6):
        loss = F.mse_loss(model(x[t * 64:(t + 1) * 64]), y[t * 64:(t + 1) * 64])
        opt.zero_grad()
        loss.backward()
        medic.step(loss)
    codes = [(f.code, f.step) for f in medic.findings]
    nonfinite = [s for c, s in codes if c in ("TM301", "TM302")]
    assert nonfinite and nonfinite[0] < 2, codes
    assert codes[0] == ("TM109", nonfinite[0]) and nonfinite[0] == 1, codes
