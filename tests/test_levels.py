"""The constant-prediction level (signals/levels.py, observe/levels.py) and what reads it: TM317's reference
(a loss pinned at the best constant prediction) and TM205's started-wrong form (a first loss orders of
magnitude above a neutral output's), on real tiny trainings under ``trainmedic run`` and ``Medic``."""

from __future__ import annotations

import contextlib
import io
import json
import math
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainmedic import Medic
from trainmedic.instrument.runner import run_script
from trainmedic.observe.graph import read_loss_graph, root_loss
from trainmedic.observe.levels import target_sample
from trainmedic.rules.levels import started_wrong
from trainmedic.signals.levels import TargetLevels


# -- the level, from targets --------------------------------------------------------------------------
def _level_of(loss: torch.Tensor) -> TargetLevels:
    lv = TargetLevels()
    root = root_loss(loss.grad_fn)
    lv.add(target_sample(root, root.target))
    return lv


def test_levels_match_the_best_constant_prediction_for_each_loss():
    torch.manual_seed(0)
    y = torch.tensor([0] * 70 + [1] * 20 + [2] * 10)
    logits = torch.zeros(100, 4, requires_grad=True)
    p = torch.tensor([0.7, 0.2, 0.1])
    assert _level_of(F.cross_entropy(logits, y)).value == pytest.approx(float(-(p * p.log()).sum()))
    assert _level_of(F.cross_entropy(logits, y)).start == pytest.approx(math.log(4))  # 4 logit columns
    best = torch.log(torch.tensor([0.7, 0.2, 0.1, 1e-12])).expand(100, 4)
    assert F.cross_entropy(best, y).item() == pytest.approx(_level_of(F.cross_entropy(logits, y)).value, rel=1e-5)

    yb = (torch.rand(200, 3) < torch.tensor([0.5, 0.1, 0.9])).float()
    z = torch.zeros(200, 3, requires_grad=True)
    lv = _level_of(F.binary_cross_entropy_with_logits(z, yb))
    m = yb.mean(0)
    assert lv.value == pytest.approx(float(F.binary_cross_entropy(m.expand(200, 3), yb)), rel=1e-5)
    assert lv.start == pytest.approx(math.log(2))

    yr = torch.randn(300, 2) * torch.tensor([1.0, 3.0]) + 5
    pr = torch.zeros(300, 2, requires_grad=True)
    lv = _level_of(F.mse_loss(pr, yr))
    assert lv.value == pytest.approx(float(F.mse_loss(yr.mean(0).expand(300, 2), yr)), rel=1e-5)
    assert lv.start == pytest.approx(float((yr**2).mean()) + 1.0, rel=1e-5)  # + a unit-variance output

    counts = torch.poisson(torch.full((400,), 1.7))
    z = torch.zeros(400, requires_grad=True)
    mean = counts.mean()
    best = float(mean - counts.mean() * mean.log())
    for loss in (F.poisson_nll_loss(z, counts),                              # log-rate form
                 ((z.exp()) - counts * z).mean(),                            # ... by hand
                 (F.softplus(z) - counts * torch.log(F.softplus(z) + 1e-8)).mean()):  # rate form by hand
        assert _level_of(loss).value == pytest.approx(best, rel=1e-5)


def test_batches_merge_to_the_whole_data_and_a_changed_loss_has_no_level():
    torch.manual_seed(1)
    y = torch.randn(256, 3) * 2 + 1
    whole, parts = TargetLevels(), TargetLevels()
    pred = torch.zeros(256, 3, requires_grad=True)
    whole.add(target_sample(root_loss(F.mse_loss(pred, y).grad_fn), y))
    for i in range(0, 256, 64):
        p = torch.zeros(64, 3, requires_grad=True)
        parts.add(target_sample(root_loss(F.mse_loss(p, y[i:i + 64]).grad_fn), y[i:i + 64]))
    assert parts.value == pytest.approx(whole.value, rel=1e-6) and parts.batches == 4
    restored = TargetLevels()
    restored.load_state_dict(json.loads(json.dumps(parts.state_dict())))
    assert restored.value == pytest.approx(parts.value)
    logits = torch.zeros(8, 3, requires_grad=True)
    parts.add(target_sample(root_loss(F.cross_entropy(logits, torch.arange(8) % 3).grad_fn), torch.arange(8) % 3))
    assert parts.kind == "mixed" and math.isnan(parts.value)


def test_the_root_loss_looks_through_a_constant_factor_and_not_through_a_sum():
    x = torch.randn(16, 4, requires_grad=True)
    y = torch.randint(0, 4, (16,))
    root = root_loss((F.cross_entropy(x, y) / 4).grad_fn)  # gradient accumulation over 4 micro-batches
    assert root.name == "cross_entropy" and root.factor == pytest.approx(0.25)
    assert root_loss((F.cross_entropy(x, y) + 0.1 * x.pow(2).mean()).grad_fn) is None  # a penalty added
    assert root_loss(F.cross_entropy(x, y, reduction="sum").grad_fn) is None
    assert root_loss(F.cross_entropy(x, y, weight=torch.ones(4)).grad_fn) is None
    graph = read_loss_graph(F.cross_entropy(x, y) * 2)
    assert graph.root is not None and graph.root.factor == pytest.approx(2.0) and graph.root.target is not None


def test_started_wrong_is_pure():
    assert started_wrong(25.0, math.log(5), 10.0)["ratio"] == pytest.approx(25 / math.log(5))
    assert started_wrong(1.7, math.log(5), 10.0) is None
    assert started_wrong(25.0, math.nan, 10.0) is None


# -- real runs ----------------------------------------------------------------------------------------
SCRIPT = textwrap.dedent('''
    import sys
    import torch
    from torch import nn
    import torch.nn.functional as F

    case = sys.argv[1]
    torch.manual_seed(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    # four imbalanced classes (70/10/10/10 %), a weak signal in 16 features: a hard task
    n = 2048
    y = torch.multinomial(torch.tensor([0.7, 0.1, 0.1, 0.1]), n, replacement=True)
    x = torch.randn(n, 16)
    x[:, :4] += 0.6 * F.one_hot(y, 4).float()
    net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    if case == "normal_init":
        for p in net.parameters():
            nn.init.normal_(p, 0.0, 1.0)
    if case == "small_init":  # DCGAN's documented init: N(0, 0.02) weights, zero biases
        for m in net.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
    # "pinned": decay 50 on the weights and none on the biases (biases left out of the decay, as is common):
    # the weights are crushed and the last bias learns the class frequencies, nothing else
    weights = [p for p in net.parameters() if p.dim() > 1]
    biases = [p for p in net.parameters() if p.dim() == 1]
    wd = 50.0 if case == "pinned" else 1e-4
    opt = torch.optim.AdamW([{"params": weights, "weight_decay": wd}, {"params": biases, "weight_decay": 0.0}],
                            lr=3e-3)
    for epoch in range(8):
        perm = torch.randperm(n)
        for i in range(0, n, 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    print("final", loss.item())
''')


def _run(tmp_path: Path, case: str, seed: int = 0) -> list[dict]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"tm_{case}_{seed}"
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_script(str(script), [case, str(seed)], out=out, console=False, summary=False) == 0
    return json.loads((out / "findings.json").read_text())["findings"]


def _medic(case: str, seed: int = 0, module_loss: bool = True, batch: bool = False, mode: str = "watch") -> Medic:
    """The same training in a hand-written loop with a plain ``medic.step(loss)`` (``mode="plain"``: no
    Medic, ``opt.step()``; returns the network)."""
    ns: dict = {}
    src = SCRIPT.split("for epoch")[0].replace("sys.argv[1]", repr(case)).replace(
        "int(sys.argv[2]) if len(sys.argv) > 2 else 0", str(seed))
    exec(compile(src, "train.py", "exec"), ns)
    net, opt, x, y = ns["net"], ns["opt"], ns["x"], ns["y"]
    loss_fn = nn.CrossEntropyLoss() if module_loss else F.cross_entropy
    medic = Medic(net, opt, mode=mode, console=False) if mode != "plain" else None
    n = len(y)
    for _ in range(8):
        perm = torch.randperm(n)
        for i in range(0, n, 64):
            idx = perm[i:i + 64]
            loss = loss_fn(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            if medic is None:
                opt.step()
                continue
            medic.step(loss, batch=(x[idx], y[idx]) if batch else None)
        if medic is not None:
            medic.end_epoch()
    return medic if medic is not None else net


def _loud(findings) -> list[str]:
    return [f["code"] for f in findings if f["severity"] in ("warning", "error")]


def test_a_run_pinned_at_the_class_frequencies_is_not_learning_under_run(tmp_path):
    """Weight decay 50 crushes the weights, the biases learn the class frequencies: the loss sits at their
    entropy (0.94), well below its first loss (log 4 = 1.39), where the first loss alone never sees it."""
    found = _run(tmp_path, "pinned")
    tm317 = [f for f in found if f["code"] == "TM317"]
    assert tm317, found
    ev = tm317[0]["evidence"]
    assert ev["reference"] == pytest.approx(ev["constant_level"]) and ev["constant_level"] < 0.9 * ev["first_loss"]
    assert ev["constant_level"] == pytest.approx(0.94, abs=0.08)
    assert "best constant prediction" in tm317[0]["message"]


def test_a_pinned_run_under_medic_with_a_loss_module(tmp_path):
    medic = _medic("pinned")
    codes = [f.code for f in medic.findings]
    assert "TM317" in codes, codes
    assert medic.engine.levels.kind == "classes" and medic.engine.levels.batches >= 3


def test_a_functional_loss_under_medic_without_a_batch_has_no_level():
    """``medic.step(loss)`` after ``F.cross_entropy``: the graph is read after backward, its target freed,
    and nothing else shows the target. The level stays unknown (NaN) rather than guessed."""
    medic = _medic("healthy", module_loss=False)
    assert math.isnan(medic.engine.levels.value)
    assert medic.engine.levels.start == pytest.approx(math.log(4))  # the loss's form and width tell the neutral loss


def test_a_pinned_run_under_medic_with_a_functional_loss_and_the_batch():
    """``F.cross_entropy`` and ``medic.step(loss, batch=(x, y))``: the target comes from the batch, the
    prediction from the model's output (the graph shows it fed the loss directly), so the input gains are
    sampled and TM317 reads the constant level, as under ``trainmedic run``."""
    medic = _medic("pinned", module_loss=False, batch=True)
    tm317 = [f for f in medic.findings if f.code == "TM317"]
    assert tm317, [f.code for f in medic.findings]
    ev = tm317[0].evidence
    assert ev["constant_level"] == pytest.approx(0.94, abs=0.08) and ev["reference"] == pytest.approx(ev["constant_level"])
    assert max(abs(g) for g in ev["input_gains"]) < 0.05 * ev["constant_level"]
    assert medic.engine.levels.gains  # sampled under Medic: the prediction was read from the model's output


def test_a_healthy_run_with_a_functional_loss_and_the_batch_reads_input_gains():
    """The healthy twin under the same front end: about 0 on its first samples (it starts near the constant
    level), its sampled gains grow clearly positive as the predictions follow the input; it stays quiet."""
    medic = _medic("healthy", module_loss=False, batch=True)
    gains = [g for _, g in medic.engine.levels.gains]
    assert len(gains) >= 3 and gains[-1] > 0.1 and gains[-1] > 10 * abs(gains[0]), gains
    assert [f.code for f in medic.findings if f.severity in ("warning", "error")] == []


def test_under_heal_the_pinned_run_is_rolled_back_and_the_healthy_one_is_left_bit_for_bit():
    """Heal with ``batch=``: TM317 from the constant level rolls the pinned run back (the rule's repair),
    and the healthy twin's weights end exactly where the plain loop's do (reading the batch changes nothing)."""
    pinned = _medic("pinned", module_loss=False, batch=True, mode="heal")
    rb = [e for e in pinned.events if e["type"] == "action" and e["action"] == "rollback"]
    assert rb and rb[0]["reason"] == "TM317", [f.code for f in pinned.findings]
    healed = _medic("healthy", module_loss=False, batch=True, mode="heal")
    plain = _medic("healthy", module_loss=False, mode="plain")
    assert healed.engine.levels.gains and not [e for e in healed.events if e["type"] == "action"]
    for p, q in zip(plain.parameters(), healed.model.parameters()):
        assert torch.equal(p, q)


def test_the_model_output_stands_for_the_prediction_only_when_it_fed_the_loss():
    """A sequence model's output reshaped into the loss is its prediction; an output changed by an op before
    the loss (a scaling, a temperature) is not."""
    torch.manual_seed(0)
    head = nn.Linear(8, 5)
    x, y = torch.randn(4, 3, 8), torch.randint(0, 5, (4, 3))
    out = head(x)
    loss = F.cross_entropy(out.reshape(-1, 5), y.reshape(-1))
    assert read_loss_graph(loss, out.grad_fn).root.from_output
    out = head(x)
    loss = F.cross_entropy((out / 2.0).reshape(-1, 5), y.reshape(-1))
    assert not read_loss_graph(loss, out.grad_fn).root.from_output
    out = head(x)
    assert not read_loss_graph(F.cross_entropy(out.reshape(-1, 5), y.reshape(-1)), None).root.from_output
    out = torch.log_softmax(head(x), dim=-1)  # a model that returns log-probabilities, with nll_loss
    graph = read_loss_graph(F.nll_loss(out.reshape(-1, 5), y.reshape(-1)), out.grad_fn)
    assert graph.root.name == "nll_loss" and graph.root.from_output
    out = torch.log_softmax(head(x[:, 0]), dim=-1)  # no reshape: read as cross-entropy, the output its input
    graph = read_loss_graph(F.nll_loss(out, y[:, 0]), out.grad_fn)
    assert graph.root.name == "cross_entropy" and graph.root.from_output


@pytest.mark.parametrize("seed", [0, 1])
def test_a_healthy_run_on_a_hard_task_stays_quiet(tmp_path, seed):
    """The healthy twin learns slowly from a weak signal and ends not far below the constant level: no
    TM317, no TM205, no warning at all."""
    found = _run(tmp_path, "healthy", seed)
    assert _loud(found) == [], found


def test_normal_init_started_wrong_under_run_and_medic(tmp_path):
    found = _run(tmp_path, "normal_init")
    tm205 = [f for f in found if f["code"] == "TM205" and f["evidence"].get("measure", "").startswith("first loss")]
    assert tm205 and tm205[0]["step"] == 0 and tm205[0]["evidence"]["ratio"] > 10, found
    for module_loss in (True, False):  # nn.CrossEntropyLoss shows its target; F.cross_entropy only its form
        medic = _medic("normal_init", module_loss=module_loss)
        assert any(f.code == "TM205" and f.evidence.get("ratio", 0) > 10 for f in medic.findings), medic.findings


def test_a_small_std_init_that_trains_fine_is_not_poor_init(tmp_path):
    """N(0, 0.02) weights (DCGAN's documented init) start with outputs near 0: a neutral first loss."""
    found = _run(tmp_path, "small_init")
    assert "TM205" not in [f["code"] for f in found] and _loud(found) == [], found
    medic = _medic("small_init")
    assert "TM205" not in [f.code for f in medic.findings], medic.findings


# -- TM205 and BatchNorm: DCGAN's documented init --------------------------------------------------------
def _dcgan(nz: int = 100, ngf: int = 64, ndf: int = 64) -> nn.Module:
    """PyTorch's examples/dcgan generator and discriminator at 64x64, with their ``weights_init``."""

    def weights_init(m: nn.Module) -> None:
        if "Conv" in type(m).__name__:
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif "BatchNorm" in type(m).__name__:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)

    def up(i: int, o: int, *a: int) -> list[nn.Module]:
        return [nn.ConvTranspose2d(i, o, 4, *a, bias=False), nn.BatchNorm2d(o), nn.ReLU(True)]

    def down(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 4, 2, 1, bias=False), nn.BatchNorm2d(o), nn.LeakyReLU(0.2, True)]

    g = nn.Sequential(*up(nz, ngf * 8, 1, 0), *up(ngf * 8, ngf * 4, 2, 1), *up(ngf * 4, ngf * 2, 2, 1),
                      *up(ngf * 2, ngf, 2, 1), nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh())
    d = nn.Sequential(nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True), *down(ndf, ndf * 2),
                      *down(ndf * 2, ndf * 4), *down(ndf * 4, ndf * 8), nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
                      nn.Sigmoid(), nn.Flatten())
    g.apply(weights_init)
    d.apply(weights_init)
    return nn.Sequential(g, d)  # the generator's update: D(G(z)) against "real"


def test_dcgan_init_is_not_poor_init_because_batchnorm_resets_the_scale():
    """The convolutions' output std differs ~50x across D(G(z)) at DCGAN's N(0, 0.02) init, but a BatchNorm
    sits between each pair: only layers between the same two normalizations are compared."""
    from trainmedic import preflight
    from trainmedic.preflight import PreflightThresholds, depth_issue, replay, split_batch

    torch.manual_seed(0)
    gan = _dcgan()
    batch = (torch.randn(8, 100, 1, 1), torch.ones(8, 1))
    w, _ = replay(gan, nn.BCELoss(), split_batch(batch), PreflightThresholds())
    values = [(n, s) for n, _m, s in w.layers]
    assert depth_issue(values, "activation std", PreflightThresholds()) is not None  # one chain: it would fire
    assert depth_issue(values, "activation std", PreflightThresholds(), w.segments) is None
    assert "TM205" not in [f.code for f in preflight(gan, nn.BCELoss(), batch, overfit=False)]
    # a plain stack of Linear layers is one chain: a fixed small std (0.01) does shrink its signal, 6x a layer
    plain = nn.Sequential(*[nn.Linear(256, 256) for _ in range(4)], nn.Linear(256, 1))
    for m in plain:
        nn.init.normal_(m.weight, 0.0, 0.01)
        nn.init.zeros_(m.bias)
    found = preflight(plain, nn.MSELoss(), (torch.randn(64, 256), torch.randn(64, 1)), overfit=False)
    assert "TM205" in [f.code for f in found]


def test_small_scale_targets_under_a_default_init_are_not_started_wrong():
    """Daily returns of std 0.02 under PyTorch's default init: the first loss is ~30x the mean squared target,
    yet the init is sound (outputs of about unit variance or less); only an output far beyond that counts."""
    torch.manual_seed(0)
    x = torch.randn(1024, 8)
    y = 0.02 * (x[:, :1] * 0.3 + torch.randn(1024, 1))
    for init in ("default", "normal"):
        net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
        if init == "normal":
            for p in net.parameters():
                nn.init.normal_(p, 0.0, 1.0)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        medic = Medic(net, opt, console=False)
        loss_fn = nn.MSELoss()
        for i in range(0, 1024, 64):
            loss = loss_fn(net(x[i:i + 64]), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
        first = medic.engine.window.initial_parts[0]
        fired = [f for f in medic.findings if f.code == "TM205" and f.evidence["measure"].startswith("first loss")]
        if init == "default":
            assert "TM205" not in [f.code for f in medic.findings]
            assert first > 10 * float((y**2).mean()) and not fired, (first, medic.findings)
        else:
            assert fired and fired[0].evidence["ratio"] > 10, medic.findings


# -- TM205 from the weights themselves ------------------------------------------------------------------
def test_weight_scale_flags_a_fixed_std_of_one_and_no_sound_init():
    """Gain = std(w) * sqrt(fan_in): N(0, 1) weights have sqrt(fan_in); PyTorch's default, Kaiming, Xavier,
    DCGAN's and GPT's N(0, 0.02), recurrent defaults and N(0, 1) embeddings (by design) are not flagged."""
    from trainmedic.preflight import PreflightThresholds, weight_scale_issue

    cfg = PreflightThresholds()

    def judged(model: nn.Module) -> object:
        return weight_scale_issue(model, torch.optim.SGD(model.parameters(), lr=0.1), cfg)

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    assert judged(mlp) is None
    for m in mlp:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    assert judged(mlp) is None
    for p in mlp.parameters():
        nn.init.normal_(p, 0.0, 1.0)
    iss = judged(mlp)
    assert iss is not None and iss.code == "TM205" and iss.evidence["gain"] > 4
    gpt = nn.Sequential(nn.Embedding(100, 768), nn.Linear(768, 3072), nn.GELU(), nn.Linear(3072, 768))
    for m in gpt:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
    assert judged(gpt) is None  # the embedding's N(0, 1) is its design, the Linear gains are 0.55 and 1.1
    assert judged(nn.LSTM(32, 64, num_layers=2)) is None
    assert judged(_dcgan(ngf=16, ndf=16)) is None
    frozen = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 1))
    nn.init.normal_(frozen[0].weight, 0.0, 1.0)  # a fixed random projection, not trained
    frozen[0].weight.requires_grad_(False)
    assert judged(frozen) is None


def test_weight_scale_is_reported_at_the_first_step_under_medic():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 1))
    for p in net.parameters():
        nn.init.normal_(p, 0.0, 1.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    medic = Medic(net, opt, console=False)
    x, y = torch.randn(64, 16), torch.randn(64, 1)
    loss = F.mse_loss(net(x), y)
    loss.backward()
    medic.step(loss)
    found = [f for f in medic.findings if f.code == "TM205" and f.evidence.get("measure", "").startswith("weight")]
    assert found and found[0].step == 0, medic.findings
