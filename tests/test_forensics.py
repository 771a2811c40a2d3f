"""Forensics on a non-finite step: the op (TM210) and the rows (TM313), and quarantine in heal mode."""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainmedic
from trainmedic import Medic, QuarantineSampler, WithIndex
from trainmedic.heal.forensics import Forensics, bisect_rows, trace_nonfinite
from trainmedic.zoo._common import mlp, regression_data

POISONED = (137, 512, 888)


def poisoned_data(poison: bool = True):
    x, y = regression_data(n=1000, d=6, seed=0)
    if poison:
        x = x.clone()
        x[list(POISONED), 2] = float("nan")  # the empty CSV fields of the zoo's dirty_rows case
    return x, y


def one_step(medic, model, loss_fn, xb, yb, opt):
    loss = loss_fn(model(xb), yb)
    opt.zero_grad()
    loss.backward()
    medic.step(loss, batch=(xb, yb))


def finding(medic, code):
    found = [f for f in medic.findings if f.code == code]
    assert found, [str(f) for f in medic.findings]
    return found[0]


# ---------------------------------------------------------------------------------------------------
# TM210: the op
# ---------------------------------------------------------------------------------------------------
def test_tm210_names_log_in_the_loss():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = torch.poisson(torch.full((64, 1), 1.5))
    model = mlp(8, 1, hidden=16)  # a linear head: some predictions are <= 0

    def poisson_by_hand(out, t):
        return (out - t * torch.log(out)).mean()

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    medic = Medic(model, opt, console=False, loss_fn=poisson_by_hand)
    n_bad = int((model(x) <= 0).sum())
    one_step(medic, model, poisson_by_hand, x, y, opt)
    f = finding(medic, "TM210")
    assert f.evidence["op"] == "log" and f.evidence["module"] == "loss"
    assert f.message.startswith("`torch.log` in `loss` received values in [")
    assert f"; {n_bad} of 64 were <= 0" in f.message
    assert f.evidence["input"]["outside"] == n_bad > 0
    assert "test_forensics.py" in f.evidence["location"]


class SqrtFeatures(nn.Module):
    def forward(self, h):
        return torch.sqrt(h)  # of a linear layer's output: negative half the time


class RowNormalize(nn.Module):
    def forward(self, h):
        return h / h.sum(dim=1, keepdim=True)  # a dead row sums to 0


def test_tm210_names_sqrt_in_a_module():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), SqrtFeatures(), nn.Linear(8, 1))
    x, y = torch.randn(32, 6), torch.randn(32, 1)
    origin = trace_nonfinite(model, nn.MSELoss(), (x, y))
    assert (origin.kind, origin.op, origin.where) == ("forward", "sqrt", "model.1 (SqrtFeatures)")
    assert origin.input["domain"] == "< 0" and origin.input["outside"] == int((model[0](x) < 0).sum())
    assert "`torch.sqrt` in `model.1 (SqrtFeatures)` received values in" in origin.message()


def test_tm210_names_a_division_by_zero():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), RowNormalize(), nn.Linear(8, 1))
    with torch.no_grad():
        model[0].bias.fill_(-1.5)  # many rows have no active unit
    x, y = torch.randn(32, 6), torch.randn(32, 1)
    origin = trace_nonfinite(model, nn.MSELoss(), (x, y))
    assert (origin.op, origin.where) == ("div", "model.2 (RowNormalize)")
    assert origin.input["domain"] == "== 0" and origin.input["outside"] > 0
    assert origin.message().startswith("`division (/)` in `model.2 (RowNormalize)` received a denominator in [0, ")


def test_tm210_backward_of_sqrt_at_zero_when_the_forward_is_finite():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()

    def euclidean(out, t):  # distance to the target: sqrt(0) when the prediction is exact
        return ((out - t) ** 2).sum(dim=1).sqrt().mean()

    x, y = torch.randn(16, 4), torch.zeros(16, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    medic = Medic(model, opt, mode="heal", console=False, loss_fn=euclidean)
    one_step(medic, model, euclidean, x, y, opt)
    assert [f.code for f in medic.findings][:1] == ["TM302"]
    f = finding(medic, "TM210")
    assert f.evidence["kind"] == "backward" and f.evidence["op"] == "sqrt"
    assert f.evidence["autograd_node"] == "SqrtBackward0"
    assert "16 of 16 were == 0" in f.message
    assert torch.equal(model.weight, torch.zeros(3, 4))  # heal skipped the step


# ---------------------------------------------------------------------------------------------------
# TM313: the rows
# ---------------------------------------------------------------------------------------------------
def test_bisection_isolates_exactly_the_poisoned_rows_of_a_batch():
    x, y = poisoned_data()
    torch.manual_seed(0)
    model = mlp(6, 1)
    rows = torch.tensor([*range(200, 261), *POISONED])  # 64 rows, the 3 poisoned ones among them
    perm = rows[torch.randperm(64)]
    res = bisect_rows(model, nn.MSELoss(), (x[perm], y[perm], perm))
    assert sorted(res.indices) == list(POISONED)
    assert sorted(int(perm[p]) for p in res.positions) == list(POISONED)
    assert res.data_nonfinite == res.positions
    # group testing: about 2 k log2(B / k) + 1 passes, far below one pass per row
    assert res.passes <= 2 * 3 * math.ceil(math.log2(64)) + 1
    assert "3 of 64 rows make the loss non-finite: dataset rows" in res.message()
    assert f"found in {res.passes} forward passes" in res.message()
    # without indices: positions and content hashes, the same rows
    res2 = bisect_rows(model, nn.MSELoss(), (x[perm], y[perm]))
    assert res2.positions == res.positions and res2.indices is None and len(set(res2.hashes)) == 3


def test_bisection_on_rows_that_are_finite_but_break_the_loss():
    # a row whose target is 0 makes log(y) in the loss -inf: the data hold no NaN, the loss does
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = torch.rand(64, 1) + 0.5
    y[[5, 40]] = 0.0

    def log_mse(out, t):
        return ((out - torch.log(t)) ** 2).mean()

    res = bisect_rows(mlp(4, 1), log_mse, (x, y))
    assert res.positions == [5, 40] and res.data_nonfinite == []


def train_dirty(mode: str, poison: bool, epochs: int = 6, with_index: bool = True):
    x, y = poisoned_data(poison)
    torch.manual_seed(0)
    model = mlp(6, 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.MSELoss()
    medic = Medic(model, opt, mode=mode, console=False, loss_fn=loss_fn)
    ds = TensorDataset(x, y)
    g = torch.Generator().manual_seed(0)
    if with_index:
        ds = WithIndex(ds)
        loader = DataLoader(ds, batch_size=64, sampler=QuarantineSampler(ds, medic, shuffle=True, generator=g))
    else:
        loader = DataLoader(ds, batch_size=64, shuffle=True, generator=g)
    nonfinite_steps = []
    for _epoch in range(epochs):
        for batch in loader:
            xb, yb = batch[0], batch[1]
            loss = loss_fn(model(xb), yb)
            if not torch.isfinite(loss):
                nonfinite_steps.append(medic.step_count)
            opt.zero_grad()
            loss.backward()
            medic.step(loss, batch=batch)
        medic.end_epoch()
    clean = torch.ones(len(x), dtype=torch.bool)
    if poison:
        clean[list(POISONED)] = False
    with torch.no_grad():
        final = float(loss_fn(model(x[clean]), y[clean]))
    return medic, final, nonfinite_steps


def test_heal_quarantines_the_dirty_rows_and_finishes_close_to_a_clean_run():
    medic, final, bad_steps = train_dirty("heal", poison=True)
    _, clean_final, _ = train_dirty("heal", poison=False)
    f = finding(medic, "TM313")
    rows = f.evidence.get("rows", f.evidence["indices"])
    assert sorted(rows) == list(POISONED)
    assert medic.quarantined == set(POISONED)
    passes = f.evidence.get("forward_passes_total", f.evidence["forward_passes"])
    assert 0 < passes <= 3 * (2 * 6 + 1)
    # every non-finite step came before the last row was quarantined; later epochs never see them
    quarantined_at = max(e["step"] for e in medic.events if e["type"] == "action" and e["action"] == "quarantine")
    assert bad_steps and max(bad_steps) <= quarantined_at
    assert math.isfinite(final) and final <= clean_final * 1.10, (final, clean_final)


def test_quarantine_by_content_hash_without_indices():
    medic, final, bad_steps = train_dirty("heal", poison=True, epochs=3, with_index=False)
    assert len(medic.quarantined) == 3 and all(str(k).startswith("sha1:") for k in medic.quarantined)
    fx = next(cb for cb in medic.callbacks if isinstance(cb, Forensics))
    # after epoch 1 the rows still arrive (plain shuffling) but their batches are recomputed without them
    assert fx.masked_steps >= 3
    assert len([f for f in medic.findings if f.code == "TM301"]) == 1  # one finding, counted
    assert math.isfinite(final)


def test_watch_mode_names_the_rows_but_changes_nothing():
    medic, _final, _ = train_dirty("watch", poison=True, epochs=1)
    f = finding(medic, "TM313")
    assert set(f.evidence["indices"]) <= set(POISONED)
    assert medic.quarantined == set()


def test_quarantine_sampler_skips_live():
    q: set[int] = set()
    sampler = QuarantineSampler(range(10), q)
    assert list(sampler) == list(range(10))
    q.update({2, 7})
    assert list(sampler) == [0, 1, 3, 4, 5, 6, 8, 9] and len(sampler) == 8
    ds = WithIndex(TensorDataset(torch.arange(5.0), torch.arange(5.0)))
    assert [int(v) for v in ds[3]] == [3, 3, 3]


def test_forensics_exported_and_cheap_when_healthy():
    assert trainmedic.WithIndex is WithIndex
    x, y = poisoned_data(poison=False)
    model = mlp(6, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    medic = Medic(model, opt, mode="heal", console=False, loss_fn=F.mse_loss)
    for i in range(5):
        one_step(medic, model, F.mse_loss, x[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64], opt)
    fx = next(cb for cb in medic.callbacks if isinstance(cb, Forensics))
    assert fx.runs == 0 and medic.findings == [] and not medic.quarantined


def test_rows_are_blamed_only_for_data_side_faults():
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = torch.poisson(torch.full((256, 1), 1.5))

    def poisson_by_hand(out, t):  # log of the prediction: the loss is at fault, not the rows
        return (out - t * torch.log(out)).mean()

    model = mlp(8, 1, hidden=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    medic = Medic(model, opt, mode="heal", console=False, loss_fn=poisson_by_hand)
    for i in range(4):
        one_step(medic, model, poisson_by_hand, x[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64], opt)
    assert finding(medic, "TM210").evidence["source"] == "prediction"
    assert "TM313" not in [f.code for f in medic.findings] and medic.quarantined == set()

    y2 = torch.rand(256, 1) + 0.5
    y2[[3, 70, 200]] = 0.0  # labels of 0 under a log: these rows are dirty

    def log_target(out, t):
        return ((out - torch.log(t)) ** 2).mean()

    model = mlp(8, 1, hidden=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    medic = Medic(model, opt, mode="heal", console=False, loss_fn=log_target)
    for i in range(4):
        sl = slice(i * 64, (i + 1) * 64)
        one_step(medic, model, log_target, x[sl], y2[sl], opt)
    assert finding(medic, "TM210").evidence["source"] == "target"
    assert len(medic.quarantined) == 3
