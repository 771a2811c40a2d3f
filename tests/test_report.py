"""The HTML report: content, escaping, partial events.jsonl, the `report` command, a real browser, TensorBoard."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch

from trainmedic import Medic
from trainmedic.cli import main
from trainmedic.report.html import load_report_data, read_events, write_report

HERE = Path(__file__).parent
ARTIFACTS = HERE / "artifacts"
EVIL = "<script>alert('x')</script>"


# ----------------------------------------------------------------------------------------------------
# fixtures: a Medic run and a fit-like output directory
# ----------------------------------------------------------------------------------------------------
class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 24), torch.nn.ReLU(), torch.nn.Linear(24, 12),
                                        torch.nn.ReLU())
        self.head = torch.nn.Linear(12, 1)

    def forward(self, x):
        return self.head(self.body(x))


def make_run(out: Path) -> Medic:
    """A heal run with something to show: a NaN step, a loss rebound that is rolled back, a quarantine."""
    torch.manual_seed(0)
    model = _Net()
    # A module name from the user, with markup and a mathtext trap.
    model.add_module("odd<b>$x$", torch.nn.Linear(1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    medic = Medic(model, opt, mode="heal", console=False)
    for epoch in range(6):
        for _ in range(40):
            x = torch.randn(32, 6)
            y = x[:, :3].sum(1, keepdim=True)
            loss = ((model(x) - y) ** 2).mean() + 0 * model.get_submodule("odd<b>$x$")(y).sum()
            t = medic.step_count
            if t == 50:
                loss = loss * float("nan")
            if 120 <= t < 145:
                loss = loss * 60
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
        medic.end_epoch(val_loss=1.0 / (epoch + 1), val_metric=0.5 + 0.05 * epoch)
    medic.report("TM313", f"rows 3 and 17 {EVIL} make the loss NaN", evidence={"rows": [3, 17]})
    medic.record_action("quarantine", "TM313", rows=[3, 17])
    medic.save_report(out)
    return medic


def make_fit(out: Path) -> None:
    """What `trainmedic fit` writes (cv.json + findings.json), with user strings that need escaping."""
    out.mkdir(parents=True, exist_ok=True)
    models = {
        "linear": {"mean": 0.131, "std": 0.011, "folds": [0.12, 0.14, 0.125, 0.145, 0.125], "regularization": [1, 2]},
        "lightgbm": {"mean": 0.126, "std": 0.008, "folds": [0.118, 0.131, 0.12, 0.138, 0.123], "rounds": [400]},
        "mlp": {"mean": 0.129, "std": 0.01, "folds": [0.121, 0.135, 0.122, 0.142, 0.125], "epochs": [30]},
        f"blend {EVIL}": {"mean": 0.121, "std": 0.007, "folds": [0.114, 0.126, 0.116, 0.131, 0.118]},
    }
    cv = {"metric": "log_rmse", "folds": models[f"blend {EVIL}"]["folds"], "mean": 0.121, "std": 0.007,
          "models": models, "best_model": f"blend {EVIL}", "task": "log-regression", "target": "SalePrice",
          "task_reason": "positive, skewed target", "rows": 1460, "n_folds": 5, "seed": 0,
          "features": {"numeric": 36, "categorical": 43}, "time_s": 12.5,
          "blend_weights": {"mean": {"linear": 0.3, "lightgbm": 0.5, "mlp": 0.2}},
          "dropped_columns": {"Id": "id-like (TM106)", "<i>Notes</i>": "constant (TM105)"}}
    (out / "cv.json").write_text(json.dumps(cv))
    findings = {"version": 1, "findings": [
        {"code": "TM106", "name": "id-like-column", "severity": "warning", "step": None, "epoch": None,
         "message": f"column <b>Id</b> is unique per row {EVIL}", "evidence": {"column": "Id"}, "action": "dropped"},
        {"code": "TM113", "name": "small-data", "severity": "info", "step": None, "epoch": None,
         "message": "1460 rows", "evidence": {}, "action": None}]}
    (out / "findings.json").write_text(json.dumps(findings))
    write_report(out)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    make_run(out)
    return out


@pytest.fixture(scope="module")
def fit_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fit")
    make_fit(out)
    return out


def _imgs(html: str) -> list[str]:
    return re.findall(r'<img class="plot" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)


def _self_contained(html: str) -> None:
    """No fetch of anything, and no script but the hover readout's, allowed by its hash and nothing else."""
    import base64
    import hashlib

    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html, re.I)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S | re.I)
    assert len(scripts) <= 1 and all(attrs.strip() == "" for attrs, _ in scripts)
    if scripts:
        digest = base64.b64encode(hashlib.sha256(scripts[0][1].encode()).digest()).decode()
        assert f"script-src 'sha256-{digest}'" in csp
    else:
        assert "script-src" not in csp


# ----------------------------------------------------------------------------------------------------
# content
# ----------------------------------------------------------------------------------------------------
def test_run_report_has_curves_events_findings_and_explanations(run_dir):
    html = (run_dir / "report.html").read_text()
    _self_contained(html)
    assert len(_imgs(html)) == 5  # loss+validation, metric, lr, grad norm, per-layer heatmap
    for pid in ("plot-loss", "plot-metric", "plot-lr", "plot-grad", "plot-heatmap"):
        assert f'id="{pid}"' in html
    run = read_events(run_dir / "events.jsonl")
    actions = {a["action"] for a in run.actions}
    assert {"skip-step", "rollback", "quarantine"} <= actions
    for a in actions:
        assert f"&times; {a}" in html  # counted in the header and listed in the actions table
    doc = json.loads((run_dir / "findings.json").read_text())
    for f in doc["findings"]:
        assert f"trainmedic explain {f['code']}" in html
    assert "What it means" in html and "How to fix it" in html  # the explain text itself
    assert 'id="quarantine"' in html and "rows=[3, 17]" in html
    assert 'id="epochs"' in html


def test_user_strings_are_escaped(run_dir, fit_dir):
    for d in (run_dir, fit_dir):
        html = (d / "report.html").read_text()
        assert EVIL not in html
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    fit = (fit_dir / "report.html").read_text()
    assert "<b>Id</b>" not in fit and "&lt;b&gt;Id&lt;/b&gt;" in fit
    assert "<i>Notes</i>" not in fit and "&lt;i&gt;Notes&lt;/i&gt;" in fit


def test_fit_report_has_fold_table_and_model_comparison(fit_dir):
    html = (fit_dir / "report.html").read_text()
    _self_contained(html)
    assert len(_imgs(html)) == 1 and 'id="plot-models"' in html
    assert "Per fold (log_rmse)" in html and "Model comparison" in html
    for v in ("0.118", "0.131", "0.145", "0.114"):
        assert v in html
    # The best model's row is highlighted (blend), and so is the best of each fold.
    assert re.search(r'<tr class="best"><td class="l">blend &lt;script', html)
    assert html.count('<td class="best">') == 5
    assert "TM106" in html and "id-like-column" in html
    assert "lower is better" in html
    assert 'id="curves"' not in html  # no training run in a fit directory


def test_findings_only_from_events_when_findings_json_is_missing(tmp_path, run_dir):
    (tmp_path / "events.jsonl").write_bytes((run_dir / "events.jsonl").read_bytes())
    data = load_report_data(tmp_path)
    assert {f["code"] for f in data.findings} >= {"TM301"}
    write_report(tmp_path)
    assert "TM301" in (tmp_path / "report.html").read_text()


# ----------------------------------------------------------------------------------------------------
# a damaged events.jsonl and the command
# ----------------------------------------------------------------------------------------------------
def damage_events(src: Path, dst: Path) -> None:
    """Keep the first 60 % of events.jsonl, cut mid-line, and spoil three lines in different ways."""
    dst.mkdir(parents=True, exist_ok=True)
    raw = (src / "events.jsonl").read_bytes()
    cut = raw[: int(len(raw) * 0.6)]
    if cut.endswith(b"\n"):
        cut = cut[:-3]
    lines = cut.split(b"\n")
    lines[3] = b'{"type": "action", "step": 1'  # broken JSON
    lines[4] = b"\xff\xfe garbage \x00"  # not UTF-8
    lines[5] = b"[1, 2, 3]"  # JSON, but not an event
    (dst / "events.jsonl").write_bytes(b"\n".join(lines))
    (dst / "findings.json").write_text('{"version": 1, "findings": [')  # truncated too


def test_truncated_and_corrupt_events_give_a_report_with_a_note(tmp_path, run_dir, capsys):
    damage_events(run_dir, tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(str(tmp_path / "report.html"))
    assert "3 of" in out and "could not be read" in out and "middle of a line" in out
    html = (tmp_path / "report.html").read_text()
    assert 'class="notes"' in html and "line 4, 5, 6" in html
    assert "findings.json could not be read" in html
    assert 'id="plot-loss"' in html  # what was readable is still drawn
    assert "TM301" in html  # findings recovered from events.jsonl


def test_report_command_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such directory" in err and "Traceback" not in err
    assert main(["report", str(tmp_path)]) == 2
    assert "events.jsonl" in capsys.readouterr().err
    (tmp_path / "f").write_text("x")
    assert main(["report", str(tmp_path / "f")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_report_command_rebuilds_and_can_write_elsewhere(tmp_path, run_dir, capsys):
    target = tmp_path / "copy.html"
    assert main(["report", str(run_dir), "-o", str(target)]) == 0
    assert len(_imgs(target.read_text())) == 5


# ----------------------------------------------------------------------------------------------------
# a real browser
# ----------------------------------------------------------------------------------------------------
def _chromium_or_skip():
    import _browser

    if _browser.find_chromium() is None:
        if os.environ.get("TRAINMEDIC_REQUIRE_BROWSER"):
            pytest.fail("chromium is required here (TRAINMEDIC_REQUIRE_BROWSER is set) but is not installed")
        pytest.skip("chromium is not installed (CI installs Debian's chromium in .ci/run; "
                    "locally: apt-get install chromium)")
    return _browser


def _not_blank(png: bytes, box: tuple[int, int, int, int] | None = None) -> tuple[int, float]:
    """(distinct colours, standard deviation of the grey levels) of the screenshot or a region of it."""
    import io

    from PIL import Image, ImageStat

    im = Image.open(io.BytesIO(png)).convert("RGB")
    if box is not None:
        im = im.crop(box)
    colours = im.getcolors(maxcolors=1 << 20)
    return (len(colours) if colours else 1 << 20), ImageStat.Stat(im.convert("L")).stddev[0]


# ----------------------------------------------------------------------------------------------------
# TensorBoard (optional)
# ----------------------------------------------------------------------------------------------------
class _FakeWriter:
    def __init__(self, log_dir, **kwargs):
        self.log_dir, self.kwargs = log_dir, kwargs
        self.scalars, self.texts, self.flushed = [], [], 0

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def add_text(self, tag, text, step):
        self.texts.append((tag, text, step))

    def flush(self):
        self.flushed += 1

    def close(self):
        pass


def _tiny(callbacks, steps=30, nan_at=10):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    medic = Medic(model, opt, mode="heal", console=False, callbacks=callbacks)
    for _ in range(steps):
        x = torch.randn(8, 3)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        if medic.step_count == nan_at:
            loss = loss * float("nan")
        opt.zero_grad()
        loss.backward()
        medic.step(loss)
    medic.end_epoch(val_loss=0.5)
    return medic


def test_tensorboard_sink_writes_scalars_and_findings(tmp_path):
    from trainmedic.report.tensorboard import TensorBoardCallback

    made = []

    def factory(log_dir, **kw):
        made.append(_FakeWriter(log_dir, **kw))
        return made[-1]

    cb = TensorBoardCallback(tmp_path / "tb", writer_factory=factory)
    medic = _tiny([cb])
    medic.save_report(tmp_path / "out", html=False)
    w = made[0]
    assert w.kwargs == {}
    losses = [s for tag, _, s in w.scalars if tag == "trainmedic/loss"]
    assert losses == list(range(30))
    assert ("trainmedic/epoch/val_loss", 0.5, 30) in w.scalars
    tags = {t for t, _, _ in w.texts}
    assert "trainmedic/findings/TM301" in tags and "trainmedic/actions" in tags
    text = next(t for tag, t, _ in w.texts if tag == "trainmedic/findings/TM301")
    assert "What it means" in text and w.flushed == 1


def test_tensorboard_sink_continues_after_resume_without_duplicates(tmp_path):
    from trainmedic.report.tensorboard import TensorBoardCallback

    made = []
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    medic = Medic(model, opt, console=False, checkpoint_dir=tmp_path / "ck", every=10)
    for _ in range(20):
        loss = (model(torch.randn(4, 3)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        medic.step(loss)
    cb = TensorBoardCallback(tmp_path / "tb", writer_factory=lambda d, **kw: made.append(_FakeWriter(d, **kw))
                             or made[-1])
    medic2 = Medic(model, opt, console=False, checkpoint_dir=tmp_path / "ck", callbacks=[cb])
    assert medic2.resume().step == 20
    for _ in range(5):
        loss = (model(torch.randn(4, 3)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        medic2.step(loss)
    w = made[0]
    assert w.kwargs == {"purge_step": 20}
    assert [s for tag, _, s in w.scalars if tag == "trainmedic/loss"] == list(range(20, 25))


def test_tensorboard_missing_is_a_warning_and_a_no_op(monkeypatch):
    from trainmedic.report.tensorboard import TensorBoardCallback, tensorboard_available

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails like a missing package
    assert not tensorboard_available()
    cb = TensorBoardCallback("unused")
    with pytest.warns(UserWarning, match="tensorboard is not installed"):
        medic = _tiny([cb], steps=5, nan_at=-1)
    assert not cb.available and cb.writer is None
    assert not [f for f in medic.findings if f.code == "TM901"]


def test_activation_samples_are_plotted_when_present(tmp_path, run_dir):
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    for step in (0, 50, 100):
        lines.append(json.dumps({"type": "activation_sample", "step": step, "layers": {
            "body.1": {"mean": 0.3, "std": 0.5 + step / 100, "dead": 0.1}, "body.3": {"std": 0.4, "dead": 0.6}}}))
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    write_report(tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert 'id="plot-activations"' in html and len(_imgs(html)) == 6


# ----------------------------------------------------------------------------------------------------
# what the run report draws: read back from the figures' own axes
# ----------------------------------------------------------------------------------------------------
def _events(out: Path, records: list[dict]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return out


def _plots_of(out: Path) -> dict:
    from trainmedic.report.figures import RUN_FIGURES, rc_context

    run = read_events(out / "events.jsonl")
    with rc_context():
        return {key: p for key, fn in RUN_FIGURES if (p := fn(run)) is not None}


def _visible_tick_labels(ax, axis: str = "x") -> list[str]:
    ax.figure.canvas.draw()
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    target = ax.xaxis if axis == "x" else ax.yaxis
    return [t.get_text() for t in target.get_ticklabels() if t.get_text() and lo <= t.get_position()[
        0 if axis == "x" else 1] <= hi]


def test_short_runs_get_integer_step_ticks_and_log_axes_keep_two_labels(tmp_path):
    """An 8-step run: no "2.5" step; gradient norms within one decade: still >= 2 labelled ticks."""
    records = [{"type": "meta", "version": 1, "mode": "watch", "steps": 8}]
    records += [{"type": "sample", "step": s, "loss": 0.9 - 0.05 * s, "grad_norm": 0.6 + 0.3 * s, "lr": 0.01}
                for s in range(8)]
    plots = _plots_of(_events(tmp_path, records))
    for key in ("loss", "lr", "grad"):
        ax = plots[key].figure.axes[0]
        labels = _visible_tick_labels(ax, "x")
        assert len(labels) >= 2 and all(re.fullmatch(r"−?\d+", t) for t in labels), (key, labels)
    grad = plots["grad"].figure.axes[0]
    assert grad.get_yscale() == "log"
    ylabels = _visible_tick_labels(grad, "y")
    assert len(ylabels) >= 2 and not any("$" in t for t in ylabels), ylabels


def test_log_axes_have_several_labelled_ticks_whatever_the_span():
    from trainmedic.report.figures import figure, log_axis

    fig = figure(4, 6)
    for i, values in enumerate(([0.15, 1.2, 7.4], [0.501, 0.503, 0.502], [3e-4, 2e-2, 5.0])):
        ax = fig.add_subplot(3, 1, i + 1)
        ax.plot(range(len(values)), values)
        log_axis(ax)
        labels = _visible_tick_labels(ax, "y")
        assert len(labels) >= 2 and not any("$" in t for t in labels), (values, labels)
        if i == 0:
            assert ax.get_yscale() == "log" and {"0.2", "0.5", "1", "2", "5"} <= set(labels), labels


def _legend_markers(ax) -> dict[str, str]:
    return {h.get_label(): getattr(h, "get_marker", lambda: None)() for h in ax.get_legend().legend_handles}


def test_each_event_type_has_its_own_marker(run_dir):
    plots = _plots_of(run_dir)
    markers = _legend_markers(plots["loss"].figure.axes[0])
    events = {label: m for label, m in markers.items()
              if not label.startswith(("training loss", "validation loss", "non-finite", "epoch mean"))}
    kinds = {label.split(" (")[0] for label in events}
    assert {"step skipped", "gradient clipped", "rollback", "quarantine"} <= kinds, markers
    actions = {label: m for label, m in events.items() if "finding" not in label}
    assert len(set(actions.values())) == len(actions), f"two event types share a marker: {actions}"


def test_epoch_mean_leaves_out_the_steps_a_rollback_undid(tmp_path):
    """Loss 1 everywhere, 100 on steps 11-15, which a rollback at step 15 undid (back to the snapshot of
    step 10). The run's own epoch mean counts them (25.75); the plotted one must not."""
    samples = [{"type": "sample", "step": s, "loss": 100.0 if 11 <= s <= 15 else 1.0, "grad_norm": 1.0, "lr": 0.1}
               for s in range(40)]
    records = [{"type": "meta", "version": 1, "mode": "heal", "steps": 40},
               {"type": "action", "step": 15, "epoch": 0, "action": "rollback", "reason": "TM306", "to_step": 10,
                "lr_before": 0.1, "lr_after": 0.05},
               {"type": "epoch", "epoch": 0, "step": 20, "train_loss": (15 * 1.0 + 5 * 100.0) / 20, "val_loss": None},
               {"type": "epoch", "epoch": 1, "step": 40, "train_loss": 1.0, "val_loss": None}, *samples]
    out = _events(tmp_path, records)
    ax = _plots_of(out)["loss"].figure.axes[0]
    mean_line = next(line for line in ax.get_lines() if line.get_label() == "epoch mean, kept steps")
    assert list(mean_line.get_xdata()) == [20, 40]
    assert list(mean_line.get_ydata()) == pytest.approx([1.0, 1.0])
    write_report(out)
    html = (out / "report.html").read_text()
    assert "train loss, kept steps" in html and "<td>25.75</td><td>1</td>" in html


def test_best_weights_restored_is_drawn_at_the_best_epoch_and_title_says_loss(tmp_path):
    val = [1.0, 0.6, 0.4, 0.5, 0.7, 0.9]  # best at epoch 2 (step 30); overfitting stops at epoch 5 (step 60)
    records = [{"type": "meta", "version": 1, "mode": "heal", "steps": 60}]
    records += [{"type": "epoch", "epoch": e, "step": 10 * (e + 1), "train_loss": 1.0 / (e + 1), "val_loss": v}
                for e, v in enumerate(val)]
    records += [{"type": "action", "step": 60, "epoch": 5, "action": "stop", "reason": "TM309", "best_epoch": 2},
                {"type": "action", "step": 60, "action": "restore-best", "reason": "TM309", "epoch": 2}]
    records += [{"type": "sample", "step": s, "loss": 1.0 / (1 + s / 10), "grad_norm": 1.0, "lr": 0.1}
                for s in range(60)]
    plots = _plots_of(_events(tmp_path / "val", records))
    ax = plots["loss"].figure.axes[0]
    assert plots["loss"].title == "Loss and validation, with every event"
    from matplotlib.collections import LineCollection, PathCollection

    stars = [c for c in ax.collections if isinstance(c, PathCollection) and c.get_sizes()[0] >= 100]
    assert len(stars) == 1 and stars[0].get_offsets().tolist() == [[30.0, 0.4]]
    assert any("best weights restored: epoch 2" == label for label in _legend_markers(ax))
    stop_x = [seg[0][0] for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()
              if c.get_color().tolist()[0][:3] == [0.0, 0.0, 0.0]]
    assert 60 in stop_x  # the early stop stays where it happened
    no_val = [dict(r, val_loss=None) if r["type"] == "epoch" else r for r in records]
    assert _plots_of(_events(tmp_path / "noval", no_val))["loss"].title == "Loss, with every event"


RUN_META = {"model_parameters": 1234567, "trainable_parameters": 1200000,
            "optimizer": {"name": "AdamW", "hyperparameters": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08,
                                                               "weight_decay": 0.01, "foreach": None,
                                                               "maximize": False, "amsgrad": False}},
            "torch": "2.13.0+cpu", "device": "cpu", "wall_time_s": 754.2, "steps_per_s": 41.7}


def test_run_metadata_is_shown_and_partial_or_odd_metadata_never_breaks_the_report(tmp_path):
    base = [{"type": "sample", "step": s, "loss": 1.0 / (s + 1), "grad_norm": 1.0, "lr": 0.001} for s in range(20)]
    out = _events(tmp_path / "full", [{"type": "meta", "version": 1, "mode": "watch", "steps": 20,
                                       "run": RUN_META}, *base])
    write_report(out)
    html = (out / "report.html").read_text()
    for text in ("1,234,567 (1.23 M) parameters, 1,200,000 (1.2 M) trainable",
                 "AdamW(lr=0.001, betas=(0.9, 0.999), weight_decay=0.01, eps=1e-08, amsgrad=False)",
                 "torch 2.13.0+cpu, cpu", "12 min 34 s, 41.7 steps/s"):
        assert text in html, text
    for i, run in enumerate([{"torch": "2.5.1"}, {"optimizer": "SGD", "wall_time_s": "soon"},
                             {"model_parameters": None, "optimizer": {"hyperparameters": [1, 2]}}, "not a dict",
                             {"optimizer": {"name": EVIL, "hyperparameters": {EVIL: EVIL}}}]):
        out = _events(tmp_path / f"odd{i}", [{"type": "meta", "version": 1, "run": run}, *base])
        write_report(out)
        html = (out / "report.html").read_text()
        assert 'id="plot-loss"' in html and EVIL not in html
    assert "torch 2.5.1" in (tmp_path / "odd0" / "report.html").read_text()


def gan_records() -> list[dict]:
    """A two-optimizer run as ``trainmedic run`` writes it: ``engine`` on every record, the engines listed."""
    meta = {"type": "meta", "version": 1, "mode": "heal", "steps": 60, "run": RUN_META,
            "engines": [{"index": 0, "name": "netG", "layers": ["g.0.weight", "g.0.bias"], "steps": 60,
                         "run": dict(RUN_META, model_parameters=5000)},
                        {"index": 1, "name": "netD", "layers": ["d.0.weight"], "steps": 60,
                         "run": dict(RUN_META, model_parameters=3000, optimizer={"name": "SGD",
                                                                                 "hyperparameters": {"lr": 0.01}})}]}
    out = [meta]
    for eng in (0, 1):
        out += [{"type": "finding", "step": 30, "epoch": 1, "code": "TM303", "severity": "warning",
                 "message": "spike", "engine": 1}] if eng else []
        out += [{"type": "action", "step": 30, "epoch": 1, "action": "clip", "reason": "TM303", "grad_norm": 50.0,
                 "clipped_to": 3.0, "engine": 1}] if eng else []
        out += [{"type": "epoch", "epoch": e, "step": 20 * (e + 1), "train_loss": 0.7 + 0.3 * eng, "val_loss": None,
                 "lr": 0.001, "engine": eng} for e in range(3)]
        out += [{"type": "sample", "step": s, "loss": (0.7 if eng == 0 else 1.3) + 0.1 * math.sin(s), "grad_norm":
                 1.0 + eng + (49.0 if eng and s == 30 else 0.0), "lr": 0.001 if eng == 0 else 0.01, "engine": eng}
                for s in range(60)]
        out += [{"type": "layer_sample", "step": s, "norms": [1.0] * (2 - eng), "engine": eng} for s in range(0, 60, 5)]
    return out


def test_each_optimizer_of_a_gan_gets_its_own_curves(tmp_path):
    out = _events(tmp_path, gan_records())
    (out / "findings.json").write_text(json.dumps({"version": 1, "findings": [
        {"code": "TM303", "name": "exploding-gradients", "severity": "warning", "step": 30, "epoch": 1,
         "message": "spike", "evidence": {"optimizer": 1, "model": "netD", "count": 1}, "action": "clipped"}]}))
    plots = _plots_of(out)
    loss_axes = [ax for ax in plots["loss"].figure.axes if ax.get_title(loc="left")]
    assert [ax.get_title(loc="left") for ax in loss_axes] == ["netG (optimizer 0)", "netD (optimizer 1)"]
    assert plots["loss"].title == "Loss per optimizer, with every event"
    g_loss = next(line for line in loss_axes[0].get_lines() if line.get_label() == "training loss (per step)")
    assert max(g_loss.get_ydata()) < 1.0  # netG's own samples only
    assert "gradient clipped (1)" in _legend_markers(loss_axes[1]) and \
        "gradient clipped (1)" not in _legend_markers(loss_axes[0])
    assert {line.get_label() for line in plots["grad"].figure.axes[0].get_lines()} >= {
        "gradient norm: netG (optimizer 0)", "gradient norm: netD (optimizer 1)"}
    assert len([ax for ax in plots["heatmap"].figure.axes if ax.get_title(loc="left")]) == 2
    write_report(out)
    html = (out / "report.html").read_text()
    assert 'id="run-engines"' in html and "<th>netD (optimizer 1)</th>" in html
    assert "5,000 parameters" in html and "SGD(lr=0.01)" in html
    assert "netD (optimizer 1)</span>" in html  # the finding says which optimizer


# ----------------------------------------------------------------------------------------------------
# the demo's dashboard, and every page of a demo output in a real browser
# ----------------------------------------------------------------------------------------------------
DEMO_CASES = ("overfitting", "healthy_plain")


def _quick_house_fit(out: Path) -> dict:
    """`trainmedic fit` on 240 rows of the shipped house prices with few folds, epochs and rounds: the real
    fit output (cv.json, findings.json, report.html) in seconds, where the demo's full fit takes a minute."""
    import pandas as pd

    from trainmedic import datasets
    from trainmedic.tabular.fit import FitConfig, fit_table
    from trainmedic.tabular.models import GBMConfig, MLPConfig

    out.parent.mkdir(parents=True, exist_ok=True)
    train = out.parent / "house-train.csv"
    pd.read_csv(datasets.house_prices_train(), keep_default_na=False, dtype=str).iloc[:240].to_csv(train, index=False)
    config = FitConfig(folds=3, mlp=MLPConfig(max_epochs=6, patience=3, bags=1),
                       gbm=GBMConfig(learning_rate=0.2, max_rounds=40, early_stopping=10, inner_folds=2),
                       progress=False)
    return fit_table(str(train), "SalePrice", out=out, config=config).cv


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """`trainmedic demo --json` on two zoo cases, plus a quick real house-price fit where the demo puts its
    own, and the dashboard rebuilt with that fit as the demo does at its end."""
    import contextlib
    import io

    from trainmedic.report.dashboard import write_dashboard

    out = tmp_path_factory.mktemp("demo")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["demo", "--no-fit", "--cases", *DEMO_CASES, "--out", str(out), "--json"]) == 0
    doc = json.loads(buf.getvalue())
    cv = _quick_house_fit(out / "house-prices")
    write_dashboard(out, doc["cases"], cv, seconds=doc["seconds"])
    return out, doc, cv


def test_demo_json_holds_the_table(demo_dir):
    out, doc, _ = demo_dir
    assert doc["index"] == str((out / "index.html").resolve()) and doc["fit"] is None
    rows = {r["case"]: r for r in doc["cases"]}
    assert set(rows) == set(DEMO_CASES)
    over = rows["overfitting"]
    assert over["detected"] is True and over["first_code"] == "TM309" and over["actions"]["restore-best"] == 1
    assert any(f.startswith("TM309@") for f in over["found"])
    assert rows["healthy_plain"]["control"] is True and rows["healthy_plain"]["false_alarms"] == []
    for r in rows.values():
        assert (out / r["report"]).is_file()


def test_dashboard_has_a_row_per_case_with_findings_heal_curve_and_the_fit(demo_dir):
    out, doc, cv = demo_dir
    html = (out / "index.html").read_text()
    _self_contained(html)
    over = next(r for r in doc["cases"] if r["case"] == "overfitting")
    assert 'id="case-overfitting"' in html and 'id="case-healthy_plain"' in html
    assert f'<span class="code expected">TM309@{over["first_step"]}</span>' in html
    assert "restore-best &times;1" in html and "stopped early with the best epoch" in html
    assert html.count('class="plot spark"') == len(DEMO_CASES)  # a loss curve per case
    assert "<b>1/1</b>faults found" in html and "<b>0</b>false alarms on 3 healthy runs" in html
    # The fit against note 001's pipeline, with its own report linked.
    assert 'id="house-prices"' in html and "0.171" in html and f"<b>{cv['mean']:.4f}</b>" in html
    for name, model in cv["models"].items():
        assert f"<td class=\"l\">{name}</td><td>{model['mean']:.4f}</td>" in html
    assert 'href="house-prices/report.html"' in html
    for href in re.findall(r'<a href="([^"#]+)"', html):
        assert (out / href).is_file(), href


@pytest.mark.parametrize("kind", ["run", "fit", "partial", "demo"])
def test_report_renders_in_headless_chromium(kind, run_dir, fit_dir, demo_dir, tmp_path):
    """Every page: no console error, no request off the machine, every plot present and not blank, and
    (for the demo) every local link leads to a file that exists."""
    browser = _chromium_or_skip()
    if kind == "run":
        pages = [run_dir / "report.html"]
    elif kind == "fit":
        pages = [fit_dir / "report.html"]
    elif kind == "partial":
        damage_events(run_dir, tmp_path / "partial")
        pages = [write_report(tmp_path / "partial")]
    else:
        out = demo_dir[0]
        pages = [out / "index.html", *sorted(out.glob("*/**/report.html"))]
        assert len(pages) == 1 + len(DEMO_CASES) + 1
    ARTIFACTS.mkdir(exist_ok=True)
    for page_path in pages:
        page = browser.render(page_path)
        name = kind if kind != "demo" else "demo-" + "-".join(page_path.relative_to(demo_dir[0]).with_suffix("").parts)
        (ARTIFACTS / f"report-{name}.png").write_bytes(page.screenshot)
        assert page.console_errors == [], (page_path, page.console_errors)
        assert page.requests == [], f"{page_path} fetched from the network: {page.requests}"
        expected = {"run": 5, "fit": 1, "partial": 5}.get(kind)
        if expected is not None:
            assert len(page.images) == expected
        if "house-prices" not in page_path.parts:  # the fit's own report decides which plots it has
            assert page.images, f"{page_path} shows no plot"
        colours, std = _not_blank(page.screenshot)
        assert colours > 50 and std > 5, f"{page_path}: the screenshot is blank"
        for img in page.images:
            assert img["complete"] and img["w"] > 300 and img["h"] > 100, (page_path, img)
            box = (int(img["x"]) + 2, int(img["y"]) + 2, int(img["x"] + img["cw"]) - 2,
                   int(img["y"] + img["ch"]) - 2)
            colours, std = _not_blank(page.screenshot, box)
            assert colours > 20 and std > 3, f"{page_path}: plot {img['alt']!r} looks blank ({colours}, {std:.1f})"
        if kind == "run":
            _check_hover(browser, page_path)
        for link in page.links:
            if link.startswith("file:"):
                assert Path(unquote(urlparse(link).path)).is_file(), f"{page_path}: broken link {link}"
        assert "Findings" in page.text or page_path.name == "index.html"
        if kind == "partial":
            assert "could not be read" in page.text


def _check_hover(browser, page_path: Path) -> None:
    """Move the mouse over the loss plot at step 50 (the NaN step) and to a plain step: the readout names
    the step, the loss there and the events at that step; off the axes it disappears."""
    import html as html_mod

    html = page_path.read_text()
    readouts = re.findall(r"data-hover='([^']+)'", html)
    assert len(readouts) >= 3  # loss, metric, lr, grad
    loss = json.loads(html_mod.unescape(readouts[0]))[0]
    (x0, y0, x1, y1), (lo, hi) = loss["box"], loss["x"]

    def fx(step):
        return x0 + (step - lo) / (hi - lo) * (x1 - x0)

    page = browser.render(page_path, hover=[(0, fx(50), (y0 + y1) / 2), (0, 0.99, 0.5), (0, fx(200), (y0 + y1) / 2)])
    at_nan, outside, plain = page.hover  # the screenshot shows the last one
    assert at_nan.splitlines()[:2] == ["step 50", "loss: not finite"], at_nan
    assert "step 50: step skipped (TM301)" in at_nan, at_nan
    assert "step 50: TM301 (error): loss is nan" in at_nan, at_nan
    assert plain.splitlines()[0] == "step 200" and re.search(r"^loss: [0-9.e-]+$", plain, re.M), plain
    assert outside == ""  # hidden off the axes
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-run-hover.png").write_bytes(page.screenshot)
