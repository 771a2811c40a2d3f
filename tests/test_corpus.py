"""The fault corpus's generator and rewriters (benchmarks/corpus/): each operator rewrites its pattern where
it occurs and nowhere else, a mutated program still runs, the Medic rewrite really drives a Medic.

The corpus benchmark itself (benchmarks/corpus.py) is not run here: it trains thousands of models.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "benchmarks" / "corpus"
sys.path.insert(0, str(CORPUS))

import mutate  # noqa: E402
import programs  # noqa: E402
import rewrite  # noqa: E402

# Tiny programs that hold the patterns the operators look for; each trains a few steps in milliseconds.
REGRESSION = '''
import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(0)
raw_x = rng.normal(size=(96, 4)) * 3 + 5
price = np.exp(rng.normal(size=96) + 3)
X_train = (raw_x - raw_x.mean(axis=0)) / (raw_x.std(axis=0) + 1e-8)
y_train = np.log1p(price)
X_train = torch.tensor(X_train, dtype=torch.float32)
y_train = torch.tensor(y_train, dtype=torch.float32)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        return self.out(self.body(x)).squeeze(-1)


model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
criterion = nn.MSELoss()
batch_size = 32
for epoch in range(4):
    perm = torch.randperm(len(X_train))
    for i in range(0, len(X_train), batch_size):
        idx = perm[i:i + batch_size]
        xb, yb = X_train[idx], y_train[idx].unsqueeze(1)
        optimizer.zero_grad()
        loss = criterion(model(xb).unsqueeze(1), yb)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        val_loss = criterion(model(X_train).unsqueeze(1), y_train.unsqueeze(1)).item()
with torch.no_grad():
    price_pred = torch.expm1(model(X_train))
'''

CLASSIFIER = '''
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

g = torch.Generator().manual_seed(0)
X_train = torch.randn(96, 6, generator=g)
y_train = (X_train[:, 0] > 0).long() + (X_train[:, 1] > 0).long()
model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=12)
loader = DataLoader(TensorDataset(X_train, y_train), batch_size=32, shuffle=True)
for epoch in range(4):
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        val_loss = F.cross_entropy(model(X_train), y_train).item()
'''

BINARY_STEPS = '''
import torch

torch.manual_seed(0)
X_train = torch.randn(128, 2)
y_train = (X_train[:, :1] * X_train[:, 1:] > 0).float()
model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
loss_fn = torch.nn.BCEWithLogitsLoss()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for it in range(20):
    idx = torch.randint(0, len(X_train), (16,))
    loss = loss_fn(model(X_train[idx]), y_train[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
'''

POISSON = '''
import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
x_tr = torch.randn(64, 3)
y_tr = torch.poisson(torch.exp(0.5 * x_tr[:, 0] - 0.5))
net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
opt = torch.optim.Adam(net.parameters(), lr=1e-2)
for epoch in range(5):
    rate = F.softplus(net(x_tr)).squeeze(-1)
    nll = (rate - y_tr * torch.log(rate + 1e-8)).mean()
    opt.zero_grad()
    nll.backward()
    opt.step()
'''

TWO_MODELS = '''
import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
x = torch.randn(32, 4)
y = torch.randint(0, 3, (32,))
teacher = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
student = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
t_opt = torch.optim.SGD(teacher.parameters(), lr=0.1)
s_opt = torch.optim.Adam(student.parameters(), lr=1e-2)
for epoch in range(3):
    t_opt.zero_grad()
    F.cross_entropy(teacher(x), y).backward()
    t_opt.step()
for epoch in range(3):
    with torch.no_grad():
        t_logits = teacher(x)
    s_logits = student(x)
    loss = F.kl_div(F.log_softmax(s_logits, dim=1), F.softmax(t_logits, dim=1), reduction="batchmean")
    s_opt.zero_grad()
    loss.backward()
    s_opt.step()
    with torch.no_grad():
        val_loss = F.cross_entropy(student(x), y).item()
'''

FREEZE_AMP = '''
import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
backbone = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
head = nn.Linear(8, 1)
model = nn.Sequential(backbone, head)
for p in backbone.parameters():
    p.requires_grad = False
optimizer = torch.optim.Adam([{"params": backbone.parameters(), "lr": 1e-4}, {"params": head.parameters(), "lr": 1e-3}])
scaler = torch.amp.GradScaler("cpu")
x, y = torch.randn(16, 4), torch.randn(16)
for epoch in range(4):
    if epoch == 2:
        for p in backbone.parameters():
            p.requires_grad = True
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    loss = F.mse_loss(out.float().squeeze(-1), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
'''

TEMPLATES = {"regression": REGRESSION, "classifier": CLASSIFIER, "binary": BINARY_STEPS, "poisson": POISSON,
             "two_models": TWO_MODELS, "freeze_amp": FREEZE_AMP}

# operator -> (template, a string the mutant must contain, a string of the template it must no longer contain)
CASES = {
    "lr_x100": ("classifier", "lr=(1e-2) * 100", None),
    "lr_x10": ("regression", "lr=(0.01) * 10", None),
    "lr_div1000": ("binary", "lr=(0.1) * 0.001", None),
    "lr_jump": ("regression", "if epoch == (4) // 2:", None),
    "no_zero_grad": ("regression", "pass", "optimizer.zero_grad()"),
    "zero_grad_after_backward": ("regression", "loss.backward()\n        optimizer.zero_grad()\n        optimizer.step()",
                                 None),
    "target_broadcast": ("regression", "xb, yb = X_train[idx], y_train[idx]\n", None),
    "softmax_into_ce": ("classifier", "F.cross_entropy(torch.softmax(model(xb), dim=1), yb)", None),
    "log_softmax_into_ce": ("classifier", "torch.log_softmax(model(xb), dim=1)", None),
    "sigmoid_into_bce_logits": ("binary", "loss_fn(torch.sigmoid(model(X_train[idx])), y_train[idx])", None),
    "logits_into_nll": ("classifier", "loss = F.nll_loss(model(xb), yb)", None),
    "kl_div_on_probs": ("two_models", "F.kl_div(F.softmax(s_logits, dim=1)", None),
    "binary_labels_1_2": ("binary", "(y_train[idx] + 1)", None),
    "labels_off_by_one": ("classifier", "F.cross_entropy(model(xb), (yb + 1))", None),
    "nan_rows": ("regression", "X_train = _tm_nan_rows(X_train)", None),
    "sentinel_rows": ("classifier", "X_train = _tm_sentinel_rows(X_train)", None),
    "unscaled_features": ("regression", "X_train = raw_x\n", None),
    "raw_skewed_target": ("regression", "y_train = price\n", "np.log1p"),
    "counts_under_mse": ("poisson", "nll = ((rate - y_tr) ** 2).mean()", None),
    "normal_init": ("binary", "torch.nn.init.normal_(_tm_p, 0.0, 1.0)", None),
    "zero_init": ("classifier", "torch.nn.init.zeros_(_tm_p)", None),
    "sigmoid_activations": ("classifier", "nn.Linear(6, 16), nn.Sigmoid()", "ReLU"),
    "deep_sigmoid": ("classifier", ", ".join(["nn.Linear(16, 16), nn.Sigmoid()"] * 8), None),
    "relu_head": ("regression", "return torch.relu(self.out(self.body(x))).squeeze(-1)", None),
    "freeze_typo": ("freeze_amp", "p.requires_grad_ = False", None),
    "optimizer_wrong_model": ("two_models", "t_opt = torch.optim.SGD(student.parameters(), lr=0.1)", None),
    "class_sorted": ("classifier", "DataLoader(_tm_sorted_dataset(X_train, y_train), batch_size=32, shuffle=False)",
                     None),
    "shuffled_labels": ("classifier", "y_train = _tm_permute(y_train)", None),
    "fp16_without_scaler": ("freeze_amp", "dtype=torch.float16", "scaler.scale("),
    "huge_weight_decay": ("regression", "momentum=0.9, weight_decay=1.0)", None),
    "tiny_batch_large_lr": ("binary", "torch.randint(0, len(X_train), (2,))", None),
    "loss_reduction_sum": ("poisson", "torch.log(rate + 1e-8)).sum()", None),
    "remove_epsilon": ("poisson", "torch.log(rate)", "1e-8"),
    "positive_link_removed": ("poisson", "rate = net(x_tr).squeeze(-1)", None),
}


def run_source(text: str, **globals_: object) -> dict:
    code = compile(text, "<mutant>", "exec")
    ns = {"__name__": "__main__", **globals_}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, ns)
    return ns


def test_every_operator_has_a_case():
    assert len(mutate.OPERATORS) >= 25
    assert set(CASES) == {op.name for op in mutate.OPERATORS}


@pytest.mark.parametrize("name", sorted(CASES))
def test_operator_rewrites_its_pattern_and_the_mutant_runs(name):
    template, must, gone = CASES[name]
    text = TEMPLATES[template]
    op = mutate.BY_NAME[name]
    found = mutate.mutants("tiny", text, (op,))
    assert found, f"{name} found no site in the {template} template"
    m = found[0]
    assert m.source != text
    assert must in m.source, m.source
    if gone:
        assert gone not in m.source.split("def _tm_")[0] or gone not in m.source.replace(must, "")
    ast.parse(m.source)
    if name == "labels_off_by_one":  # the shifted class index is out of range: the fault crashes at once
        with pytest.raises((IndexError, RuntimeError)):
            run_source(m.source)
    else:
        run_source(m.source)


def test_operators_apply_only_where_their_pattern_occurs():
    text = TEMPLATES["binary"]  # no zero-grad misplacement target, no CE, no data loader, no standardization
    for name in ("softmax_into_ce", "logits_into_nll", "class_sorted", "unscaled_features", "freeze_typo",
                 "fp16_without_scaler", "counts_under_mse", "optimizer_wrong_model", "raw_skewed_target"):
        assert mutate.mutants("tiny", text, (mutate.BY_NAME[name],)) == [], name
    # one mutant per optimizer where the fault concerns one optimizer
    two = mutate.mutants("tiny", TEMPLATES["two_models"], (mutate.BY_NAME["lr_x100"],))
    assert [m.where.split(":")[0] for m in two] == ["line 11", "line 12"]


def test_data_fault_really_poisons_the_training_rows():
    m = mutate.mutants("tiny", TEMPLATES["regression"], (mutate.BY_NAME["nan_rows"],))[0]
    ns = run_source(m.source)
    assert torch.isnan(ns["X_train"]).any(dim=1).sum().item() == 3
    ns = run_source(mutate.mutants("tiny", TEMPLATES["classifier"], (mutate.BY_NAME["class_sorted"],))[0].source)
    labels = torch.cat([yb for _, yb in ns["loader"]])
    assert torch.equal(labels, torch.sort(labels).values)


def test_every_base_program_parses_and_every_operator_applies_somewhere():
    applied = set()
    for prog in programs.PROGRAMS:
        text = prog.path.read_text()
        assert "trainmedic" not in text
        assert "--seed" in text and "FINAL " in text
        for m in mutate.mutants(prog.name, text):
            applied.add(m.operator.name)
    assert applied == {op.name for op in mutate.OPERATORS}


def test_medic_rewrite_drives_one_medic_per_optimizer():
    text = rewrite.medic_rewrite(TEMPLATES["two_models"], val_var="val_loss", epoch_var="epoch")
    medics: list = []
    run_source(text, _TM_MEDICS=medics)
    assert [m.step_count for m in medics] == [3, 3]
    assert len(medics[0].epochs) == 3  # the teacher's loop has no validation: end_epoch() per epoch
    assert [e["val_loss"] is not None for e in medics[1].epochs] == [True] * 3


def test_medic_rewrite_of_a_scaler_loop_and_of_a_mutant():
    medics: list = []
    run_source(rewrite.medic_rewrite(TEMPLATES["freeze_amp"], None, None), _TM_MEDICS=medics)
    assert medics[0].step_count == 4 and medics[0].scaler is not None
    mutant = mutate.mutants("tiny", TEMPLATES["regression"], (mutate.BY_NAME["no_zero_grad"],))[0]
    medics = []
    run_source(rewrite.medic_rewrite(mutant.source, "val_loss", None), _TM_MEDICS=medics)
    assert "TM310" in {f.code for f in medics[0].findings}


def _step_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("_tm_step(")]


def test_medic_batch_rewrite_hands_over_the_loss_function_and_the_batch():
    """The batch form passes ``loss_fn`` and ``batch=`` where the loss is a loss function of the model's output
    and a target; the loss as written becomes the function when more than the bare call stands around the
    output (a softmax, an unsqueeze); anything else keeps ``medic.step(loss)``."""
    def steps(name, batch=True):
        return _step_lines(rewrite.medic_rewrite(TEMPLATES[name], "val_loss", "epoch", batch=batch))

    assert steps("binary") == ["_tm_step(opt, loss, batch=(X_train[idx], y_train[idx]), loss_fn=loss_fn)"]
    assert steps("classifier") == ["_tm_step(opt, loss, batch=(xb, yb), loss_fn=F.cross_entropy)"]
    assert steps("regression") == ["_tm_step(optimizer, loss, batch=(xb, yb), loss_fn=lambda _tm_out, _tm_target: "
                                   "criterion(_tm_out.unsqueeze(1), _tm_target))"]
    soft = mutate.mutants("tiny", TEMPLATES["classifier"], (mutate.BY_NAME["softmax_into_ce"],))[0]
    assert _step_lines(rewrite.medic_rewrite(soft.source, "val_loss", None, batch=True)) == [
        "_tm_step(opt, loss, batch=(xb, yb), loss_fn=lambda _tm_out, _tm_target: "
        "F.cross_entropy(torch.softmax(_tm_out, dim=1), _tm_target))"]
    assert steps("poisson") == ["_tm_step(opt, nll)"]  # a hand-written likelihood: no loss function to name
    assert steps("two_models")[1] == (  # distillation on the teacher's probabilities: they are the target
        '_tm_step(s_opt, loss, batch=(x, F.softmax(t_logits, dim=1)), loss_fn=lambda _tm_out, _tm_target: '
        'F.kl_div(F.log_softmax((_tm_out), dim=1), _tm_target, reduction="batchmean"))')
    two_terms = TEMPLATES["classifier"].replace("loss = F.cross_entropy(model(xb), yb)",
                                                "loss = F.cross_entropy(model(xb), yb) + F.mse_loss(model(xb), xb[:, :3])")
    assert _step_lines(rewrite.medic_rewrite(two_terms, "val_loss", None, batch=True)) == ["_tm_step(opt, loss)"]
    assert steps("classifier", batch=False) == ["_tm_step(opt, loss)"]  # the plain form is unchanged
    # parameter groups over a body and a head: the module built from both, which the loss calls, is the model
    prog = programs.BY_NAME["finetune_frozen"]
    plain, batch = (rewrite.medic_rewrite(prog.path.read_text(), prog.val_var, prog.epoch_var, batch=b)
                    for b in (False, True))
    assert "_tm_attach(optimizer, torch.nn.ModuleList([features, head]))" in plain
    assert "_tm_attach(optimizer, model)" in batch
    assert _step_lines(batch)[1] == "_tm_step(optimizer, loss, batch=(xb, yb), loss_fn=F.cross_entropy)"


def test_medic_batch_form_names_a_softmax_before_a_functional_cross_entropy():
    """TM202 on ``F.cross_entropy`` needs the replay of the loss: found in the batch form, not in the plain one
    (which sees no ``nn`` loss module to hook). The healthy program stays silent in both."""
    soft = mutate.mutants("tiny", TEMPLATES["classifier"], (mutate.BY_NAME["softmax_into_ce"],))[0]
    found = {}
    for batch in (False, True):
        for name, text in (("healthy", TEMPLATES["classifier"]), ("softmax", soft.source)):
            medics: list = []
            run_source(rewrite.medic_rewrite(text, "val_loss", None, batch=batch), _TM_MEDICS=medics)
            found[name, batch] = [f.code for f in medics[0].findings if f.severity in ("warning", "error")]
    assert found["healthy", False] == found["healthy", True] == []
    assert "TM202" not in found["softmax", False]
    assert found["softmax", True][:1] == ["TM202"]


def test_forensics_replays_a_gradient_overflow_under_the_medic_batch_form():
    """moons_binary with the loss summed over the batch at lr 0.1: the gradients overflow while the loss is still
    finite, and forensics replays the backward on a copy of the model. The copy used to drag the live checks
    along through their hook on the model, with the output of an observed step (a non-leaf tensor deepcopy
    refuses): forensics failed as TM901 instead of naming the op (TM210)."""
    prog = programs.BY_NAME["moons_binary"]
    mutant = mutate.mutants(prog.name, prog.path.read_text(), (mutate.BY_NAME["loss_reduction_sum"],))[0]
    medics: list = []
    argv = sys.argv
    sys.argv = ["moons_binary.py", "--seed", "0", "--steps", "40"]
    try:
        run_source(rewrite.medic_rewrite(mutant.source, prog.val_var, prog.epoch_var, batch=True), _TM_MEDICS=medics)
    finally:
        sys.argv = argv
    codes = [f.code for f in medics[0].findings]
    assert "TM901" not in codes and "TM210" in codes, codes


def test_rewriters_refuse_what_they_cannot_rewrite():
    with pytest.raises(rewrite.NotRewritable):
        rewrite.medic_rewrite("import torch\nx = torch.zeros(1)\n", None, None)
    with pytest.raises(rewrite.NotRewritable):
        rewrite.lightning_rewrite(TEMPLATES["binary"])
    text = rewrite.lightning_rewrite("import pytorch_lightning as pl\ntrainer = pl.Trainer(max_epochs=1)\n")
    assert "callbacks=[_tm_callback()]" in text


def _harness():
    spec = importlib.util.spec_from_file_location("corpus_harness", ROOT / "benchmarks" / "corpus.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_harm_criterion():
    h = _harness()
    prog = programs.BY_NAME["digits_cnn"]  # error rate, absolute margin 0.01
    healthy = {0: 0.010, 1: 0.020}
    ok = {"rc": 0, "metric": 0.021, "optimizer_steps": 10}
    assert h.harm_of(prog, ok, healthy, 0)[0] == "excluded:no_harm"  # inside the healthy range
    assert h.harm_of(prog, {**ok, "metric": 0.05}, healthy, 0)[0] == "worse"
    assert h.harm_of(prog, {**ok, "metric": float("nan")}, healthy, 0)[0] == "nonfinite"
    assert h.harm_of(prog, {"rc": 1, "error": "x", "optimizer_steps": 5}, healthy, 0)[0] == "crash"
    assert h.harm_of(prog, {"rc": 1, "error": "x", "optimizer_steps": 0}, healthy, 0)[0] == "excluded:stillborn"
