"""The HTML report: content, escaping, partial events.jsonl, the `report` command, a real browser, TensorBoard."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

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
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html, re.I)
    assert "Content-Security-Policy" in html


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


@pytest.mark.parametrize("kind", ["run", "fit", "partial"])
def test_report_renders_in_headless_chromium(kind, run_dir, fit_dir, tmp_path):
    browser = _chromium_or_skip()
    if kind == "run":
        d = run_dir
    elif kind == "fit":
        d = fit_dir
    else:
        d = tmp_path / "partial"
        damage_events(run_dir, d)
        write_report(d)
    page = browser.render(d / "report.html")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"report-{kind}.png").write_bytes(page.screenshot)

    assert page.console_errors == [], page.console_errors
    assert page.requests == [], f"the report fetched from the network: {page.requests}"
    expected = {"run": 5, "fit": 1, "partial": 5}[kind]
    assert len(page.images) == expected
    colours, std = _not_blank(page.screenshot)
    assert colours > 50 and std > 5, "the screenshot is blank"
    for img in page.images:
        assert img["complete"] and img["w"] > 300 and img["h"] > 100, img
        box = (int(img["x"]) + 2, int(img["y"]) + 2, int(img["x"] + img["cw"]) - 2, int(img["y"] + img["ch"]) - 2)
        colours, std = _not_blank(page.screenshot, box)
        assert colours > 20 and std > 3, f"plot {img['alt']!r} looks blank ({colours} colours, std {std:.1f})"
    assert "Findings" in page.text
    if kind == "partial":
        assert "could not be read" in page.text


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
