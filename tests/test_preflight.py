"""Pre-flight wiring checks (TM201-TM208, TM211) on real tiny models, standalone and inside Medic."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainmedic
from trainmedic import Medic
from trainmedic.preflight import PreflightCallback
from trainmedic.zoo._common import classification_data, mlp, regression_data
from trainmedic.zoo.healthy_cnn import cnn, images


def codes(findings):
    return sorted(f.code for f in findings)


@pytest.fixture(scope="module")
def reg():
    x, y = regression_data(n=64, d=16)
    return x, y  # y has shape (64, 1)


@pytest.fixture(scope="module")
def cls():
    return classification_data(n=64)


# ---------------------------------------------------------------------------------------------------
# healthy setups stay silent, and nothing of the user's changes
# ---------------------------------------------------------------------------------------------------
def test_healthy_setups_are_silent_even_with_the_overfit_check(reg, cls):
    x, y = reg
    m = mlp(16, 1)
    assert trainmedic.preflight(m, nn.MSELoss(), (x, y), torch.optim.Adam(m.parameters()), overfit=True) == []
    xc, yc = cls
    m = mlp(20, 4)
    assert trainmedic.preflight(m, F.cross_entropy, (xc, yc), torch.optim.SGD(m.parameters(), 0.1),
                                overfit=True) == []
    xi, yi = images(n=32)
    m = cnn()  # BatchNorm and dropout
    assert trainmedic.preflight(m, nn.CrossEntropyLoss(), (xi, yi), torch.optim.Adam(m.parameters())) == []
    m = mlp(16, 1, hidden=64, depth=5)  # PyTorch's default init, deeper: shrinks ~2.4x per layer, not flagged
    assert trainmedic.preflight(m, nn.MSELoss(), (x, y), overfit=False) == []


def test_preflight_leaves_model_optimizer_and_rng_untouched(reg):
    x, y = reg
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 1))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    loss = F.mse_loss(m(x), y)
    loss.backward()
    opt.step()  # optimizer state exists
    state = copy.deepcopy(m.state_dict())
    grads = [p.grad.clone() for p in m.parameters()]
    opt_state = copy.deepcopy(opt.state_dict())
    rng = torch.get_rng_state()
    findings = trainmedic.preflight(m, nn.MSELoss(), (x, y), opt, overfit=True)
    assert findings == []
    assert all(torch.equal(a, b) for a, b in zip(state.values(), m.state_dict().values()))
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, m.parameters()))
    assert torch.equal(rng, torch.get_rng_state())
    after = opt.state_dict()
    assert all(torch.equal(opt_state["state"][k]["exp_avg"], after["state"][k]["exp_avg"]) for k in after["state"])
    assert m.training


# ---------------------------------------------------------------------------------------------------
# TM201 broadcast trap
# ---------------------------------------------------------------------------------------------------
def test_tm201_hand_written_trap(reg):
    x, y = reg
    fs = trainmedic.preflight(mlp(16, 1), lambda out, t: ((out - t) ** 2).mean(), (x, y[:, 0]))
    assert codes(fs) == ["TM201"]
    ev = fs[0].evidence
    assert ev["prediction_shape"] == (64, 1) and ev["target_shape"] == (64,) and ev["result_shape"] == (64, 64)
    assert ev["then"] == "pow"
    assert "test_preflight.py" in ev["where"]
    assert fs[0].message.startswith("sub((64, 1), (64,)) -> (64, 64), then pow()")


def test_tm201_target_first_and_abs_forms(reg):
    x, y = reg
    fs = trainmedic.preflight(mlp(16, 1), lambda out, t: (t - out).abs().mean(), (x, y[:, 0]))
    assert codes(fs) == ["TM201"]


@pytest.mark.parametrize("loss_fn", [nn.MSELoss(), nn.L1Loss(), nn.SmoothL1Loss(), F.mse_loss],
                         ids=["MSELoss", "L1Loss", "SmoothL1Loss", "F.mse_loss"])
def test_tm201_nn_loss_forms(reg, loss_fn):
    x, y = reg
    fs = trainmedic.preflight(mlp(16, 1), loss_fn, (x, y[:, 0]))
    assert codes(fs) == ["TM201"], fs
    assert fs[0].evidence["result_shape"] == (64, 64)


class LegitBroadcastNet(nn.Module):
    """Broadcasting everywhere, all of it legitimate."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8, bias=False)
        self.bias = nn.Parameter(torch.zeros(8))
        self.scale = nn.Parameter(torch.ones(8))
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        h = self.fc(x) + self.bias  # bias add: (B,8) + (8,)
        h = (h - h.mean(0)) / (h.std(0) + 1e-5)  # x - x.mean(0): (B,8) - (8,)
        h = torch.relu(h * self.scale * 0.5)  # per-channel and scalar scaling
        pos = torch.arange(8, dtype=h.dtype)
        rel = pos[:, None] - pos  # (8,1) - (8,) -> (8,8): relative positions, inside the model
        h = h + 0.0 * (h @ rel)
        return self.head(h)


def test_tm201_legit_broadcasting_is_silent(reg):
    x, y = reg
    mask = (torch.rand(64, 1) > 0.2).float()
    weights = torch.tensor([2.0])

    def masked_weighted(out, t):  # a (B,1) mask and a per-output weight on the loss path
        return (((out - t) ** 2) * mask * weights).sum() / mask.sum()

    def standardized(out, t):  # target normalization by a scalar statistic
        return ((out - (t - t.mean()) / t.std()) ** 2).mean()

    def pairwise_ranking(out, t):  # every prediction against every other: explicit dims, same tensor
        d = out[:, None, 0] - out[None, :, 0]
        s = torch.sign(t[:, None, 0] - t[None, :, 0])
        return F.softplus(-s * d).mean()

    def explicit_outer(out, t):  # both dims written out: intended all-pairs comparison
        return ((out.view(-1, 1) - t.view(1, -1)) ** 2).mean()

    for loss_fn in (masked_weighted, standardized, pairwise_ranking, explicit_outer, nn.MSELoss()):
        fs = trainmedic.preflight(LegitBroadcastNet(), loss_fn, (x, y), overfit=False)
        assert [f.code for f in fs if f.code == "TM201"] == [], (loss_fn, fs)


# ---------------------------------------------------------------------------------------------------
# TM202 / TM203
# ---------------------------------------------------------------------------------------------------
def test_tm202_probabilities_into_logit_losses(cls):
    x, y = cls
    soft = nn.Sequential(mlp(20, 4), nn.Softmax(dim=1))
    assert codes(trainmedic.preflight(soft, nn.CrossEntropyLoss(), (x, y))) == ["TM202"]
    yb = (y > 1).float()[:, None]
    sig = nn.Sequential(mlp(20, 1), nn.Sigmoid())
    assert codes(trainmedic.preflight(sig, nn.BCEWithLogitsLoss(), (x, yb))) == ["TM202"]
    # and the mirror: logits into the probability losses
    assert codes(trainmedic.preflight(mlp(20, 1), nn.BCELoss(), (x, yb))) == ["TM202"]
    assert codes(trainmedic.preflight(mlp(20, 4), nn.NLLLoss(), (x, y))) == ["TM202"]
    # the right pairs are silent
    logsm = nn.Sequential(mlp(20, 4), nn.LogSoftmax(dim=1))
    assert trainmedic.preflight(logsm, nn.NLLLoss(), (x, y), overfit=False) == []
    assert trainmedic.preflight(sig, nn.BCELoss(), (x, yb), overfit=False) == []
    assert trainmedic.preflight(mlp(20, 1), nn.BCEWithLogitsLoss(), (x, yb), overfit=False) == []


@pytest.mark.parametrize("case", ["float-index", "range", "shape", "one-hot", "bce-range", "one-class"])
def test_tm203_target_mismatch(cls, case):
    x, y = cls
    model, loss_fn, target = mlp(20, 4), nn.CrossEntropyLoss(), y
    if case == "float-index":
        target = y.float()
    elif case == "range":
        target = y + 1  # classes numbered 1..4
    elif case == "shape":
        target = y[:, None]
    elif case == "one-hot":
        target = F.one_hot(y, 4)
    elif case == "bce-range":
        model, loss_fn, target = mlp(20, 1), nn.BCEWithLogitsLoss(), torch.where(y > 1, 1.0, -1.0)[:, None]
    elif case == "one-class":
        model, target = mlp(20, 1), torch.zeros_like(y)
    fs = trainmedic.preflight(model, loss_fn, (x, target), overfit=False)
    assert "TM203" in codes(fs), fs
    assert not any(f.code == "TM901" for f in fs)


def test_tm203_soft_labels_are_fine_multi_hot_is_not(cls):
    x, y = cls
    soft = F.one_hot(y, 4).float() * 0.9 + 0.025  # label smoothing: rows sum to 1
    assert trainmedic.preflight(mlp(20, 4), nn.CrossEntropyLoss(), (x, soft), overfit=False) == []
    multi = (torch.rand(64, 4) > 0.5).float()
    assert codes(trainmedic.preflight(mlp(20, 4), nn.CrossEntropyLoss(), (x, multi), overfit=False)) == ["TM203"]


# ---------------------------------------------------------------------------------------------------
# TM204 orphans
# ---------------------------------------------------------------------------------------------------
class WithUnused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(16, 8)
        self.head = nn.Linear(8, 1)
        self.aux = nn.Linear(8, 3)  # defined, never used

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def test_tm204_orphan_parameters(reg):
    x, y = reg
    m = WithUnused()
    fs = trainmedic.preflight(m, nn.MSELoss(), (x, y), torch.optim.Adam(m.parameters()), overfit=False)
    assert codes(fs) == ["TM204"]
    assert fs[0].evidence["no_grad"] == ["aux.weight", "aux.bias"]
    # an optimizer built on another instance of the model
    m2 = mlp(16, 1)
    fs = trainmedic.preflight(m2, nn.MSELoss(), (x, y), torch.optim.Adam(mlp(16, 1).parameters()), overfit=False)
    assert codes(fs) == ["TM204"] and "another model instance" in fs[0].message
    # a layer left out of the optimizer
    m3 = mlp(16, 1)
    opt = torch.optim.Adam(m3[2].parameters())
    fs = trainmedic.preflight(m3, nn.MSELoss(), (x, y), opt, overfit=False)
    assert codes(fs) == ["TM204"] and fs[0].evidence["not_in_optimizer"][:2] == ["0.weight", "0.bias"]
    # a detached output: nothing gets a gradient
    fs = trainmedic.preflight(mlp(16, 1), lambda o, t: F.mse_loss(o.detach(), t), (x, y))
    assert codes(fs) == ["TM204"]


# ---------------------------------------------------------------------------------------------------
# TM205-TM207, TM211
# ---------------------------------------------------------------------------------------------------
def test_tm205_poor_init(reg):
    x, y = reg
    m = mlp(16, 1, depth=4)
    for layer in m:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 0.05)  # a fixed small std: ~3.5x shrink per layer
            nn.init.zeros_(layer.bias)
    fs = trainmedic.preflight(m, nn.MSELoss(), (x, y), overfit=False)
    assert codes(fs) == ["TM205"]
    assert fs[0].evidence["measure"] == "activation std" and fs[0].evidence["per_layer"] > 3
    deep_sigmoid = mlp(20, 4, depth=12, act=nn.Sigmoid)  # gradients vanish through 12 sigmoids
    xc, yc = classification_data(n=64)
    fs = trainmedic.preflight(deep_sigmoid, F.cross_entropy, (xc, yc), overfit=False)
    assert [f.evidence["measure"] for f in fs if f.code == "TM205"] == ["weight-gradient RMS"]


def test_tm206_saturated_tanh_on_unscaled_inputs(reg):
    x, y = reg
    fs = trainmedic.preflight(mlp(16, 1, act=nn.Tanh), nn.MSELoss(), (x * 100, y), overfit=False)
    assert "TM206" in codes(fs)
    assert next(f for f in fs if f.code == "TM206").evidence["sites"][0]["share"] > 0.5


def test_tm207_dead_relu(reg):
    x, y = reg
    m = mlp(16, 1)
    nn.init.constant_(m[0].bias, -4.0)
    fs = trainmedic.preflight(m, nn.MSELoss(), (x, y), overfit=False)
    dead = [f for f in fs if f.code == "TM207"]
    assert dead and dead[0].evidence["layers"][0]["share"] >= 0.7
    assert "model.1 (ReLU)" in dead[0].message


def test_tm211_head_cannot_reach_targets(reg):
    x, y = reg  # standardized-ish targets with negative values
    relu_head = nn.Sequential(mlp(16, 1), nn.ReLU())
    fs = trainmedic.preflight(relu_head, nn.MSELoss(), (x, y), overfit=False)
    assert codes(fs) == ["TM211"] and fs[0].evidence["activation"] == "relu"
    sig_head = nn.Sequential(mlp(16, 1), nn.Sigmoid())
    fs = trainmedic.preflight(sig_head, lambda o, t: ((o.squeeze(-1) - t[:, 0]) ** 2).mean(), (x, y * 10),
                              overfit=False)
    assert codes(fs) == ["TM211"] and fs[0].evidence["activation"] == "sigmoid"
    # a sigmoid head on 0/1 targets, a ReLU head on counts: fine
    assert trainmedic.preflight(sig_head, nn.MSELoss(), (x, (y > 0).float()), overfit=False) == []
    assert trainmedic.preflight(relu_head, nn.MSELoss(), (x, y.abs().round()), overfit=False) == []


# ---------------------------------------------------------------------------------------------------
# TM208
# ---------------------------------------------------------------------------------------------------
class BatchMeanBug(nn.Module):
    """Pools over the batch dimension instead of the features: every row gets the same prediction."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(16, 32)
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        h = torch.relu(self.enc(x))
        h = h.mean(dim=0, keepdim=True).expand_as(h)
        return self.head(h)


def test_tm208_cannot_overfit_one_batch(reg):
    x, y = reg
    fs = trainmedic.preflight(BatchMeanBug(), nn.MSELoss(), (x, y), overfit=True)
    assert codes(fs) == ["TM208"]
    tries = fs[0].evidence["tries"]
    assert [t["lr"] for t in tries] == [1e-3, 1e-2] and all(t["drop"] < 0.9 for t in tries)
    # the same model with the pooling fixed fits the batch
    assert trainmedic.preflight(mlp(16, 1), nn.MSELoss(), (x, y), overfit=True) == []


# ---------------------------------------------------------------------------------------------------
# inside Medic
# ---------------------------------------------------------------------------------------------------
def _run(model, loss_fn, x, y, steps=5, **kw):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    medic = Medic(model, opt, console=False, loss_fn=loss_fn, **kw)
    for i in range(steps):
        xb, yb = x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        medic.step(loss, batch=(xb, yb))
    return medic


def test_medic_runs_preflight_on_the_first_step_and_changes_nothing():
    x, y = regression_data(n=160, d=16)
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))
    b = copy.deepcopy(a)
    torch.manual_seed(1)
    ma = _run(a, nn.MSELoss(), x, y, steps=10)
    torch.manual_seed(1)
    mb = _run(b, nn.MSELoss(), x, y, steps=10, preflight=False)
    assert ma.findings == [] and mb.findings == []
    pre = next(cb for cb in ma.callbacks if isinstance(cb, PreflightCallback))
    assert pre.replay_done and pre.seconds > 0
    # bit-identical training with and without pre-flight: weights, BatchNorm statistics, dropout masks
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_medic_reports_wiring_findings_at_step_zero():
    x, y = regression_data(n=160, d=16)
    trap = lambda out, t: ((out - t) ** 2).mean()  # noqa: E731
    medic = _run(mlp(16, 1), trap, x, y[:, 0])
    assert [(f.code, f.step) for f in medic.findings] == [("TM201", 0)]
    assert medic.findings[0].evidence["result_shape"] == (16, 16)
    m = WithUnused()
    medic = _run(m, nn.MSELoss(), x, y)
    assert [f.code for f in medic.findings] == ["TM204"]


def test_medic_without_loss_fn_or_batch_is_silent_on_a_healthy_setup():
    x, y = regression_data(n=160, d=16)
    model = mlp(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    medic = Medic(model, opt, console=False)
    for i in range(3):
        loss = F.mse_loss(model(x[i * 16:(i + 1) * 16]), y[i * 16:(i + 1) * 16])
        opt.zero_grad()
        loss.backward()
        medic.step(loss)
    assert medic.findings == []


def test_medic_without_batch_replays_its_own_forward_for_the_init_checks(reg):
    """``medic.step(loss)`` with no ``loss_fn`` and no ``batch=``: pre-flight replays, forward-only, the input
    of the step's own training forward (kept by the Medic), so the activation checks at initialization run:
    a 4-layer MLP whose activations shrink ~3.5x per layer gets TM205 (output std) at step 0. The same MLP at
    PyTorch's default init stays silent, and training is bit-identical with and without pre-flight."""
    x, y = reg

    def train(poor, preflight=True):
        torch.manual_seed(0)
        m = mlp(16, 1, depth=4)
        if poor:
            for layer in m:
                if isinstance(layer, nn.Linear):
                    nn.init.normal_(layer.weight, 0.0, 0.05)
                    nn.init.zeros_(layer.bias)
        opt = torch.optim.SGD(m.parameters(), lr=0.01)
        medic = Medic(m, opt, console=False, preflight=preflight)
        for i in range(4):
            loss = F.mse_loss(m(x[i * 16:(i + 1) * 16]), y[i * 16:(i + 1) * 16])
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
        return medic, m

    poor, _ = train(True)
    tm205 = [f for f in poor.findings if f.code == "TM205"]
    assert [(f.step, f.evidence["measure"]) for f in tm205] == [(0, "activation std")]
    healthy, a = train(False)
    assert healthy.findings == []
    _, b = train(False, preflight=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
