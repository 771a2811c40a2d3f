"""The fit report's figures and importance: real fits of small tables, checked image by image."""

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image, ImageStat
from tabular_helpers import fast_config, synthetic

from trainmedic.tabular.fit import fit_table
from trainmedic.tabular.models import MLPConfig

CFG = dict(mlp=MLPConfig(max_epochs=40, patience=5, bags=1))
COMMON = {"plot-folds", "plot-curves", "plot-importance"}
BY_TASK = {"regression": {"plot-oof"}, "binary": {"plot-classes"}, "multiclass": {"plot-classes"},
           "count": {"plot-rootogram"}}


def images(html):
    return dict(re.findall(r'<figure id="(plot-[a-z]+)"><img class="plot" alt="[^"]*" '
                           r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html))


@pytest.mark.parametrize("kind", ["regression", "binary", "multiclass", "count"])
def test_report_has_the_task_figures_and_they_are_not_blank(tmp_path, kind):
    df = synthetic(300, kind)
    df["noise"] = np.random.default_rng(5).normal(size=len(df))
    res = fit_table(df, "y", out=tmp_path, config=fast_config(**CFG))
    html = (tmp_path / "report.html").read_text()
    assert "default-src 'none'" in html and "<script" not in html
    imgs = images(html)
    assert set(imgs) == COMMON | BY_TASK[kind]
    for pid, data in imgs.items():
        im = Image.open(io.BytesIO(base64.b64decode(data)))
        assert im.format == "PNG" and im.width > 300 and im.height > 100, pid
        assert ImageStat.Stat(im.convert("L")).stddev[0] > 5, f"{pid} looks blank"
    # importance in cv.json: the column the target depends on most leads, the pure-noise column does not matter
    cv = json.loads((tmp_path / "cv.json").read_text())
    perm = cv["importance"]["permutation"]
    assert set(perm) == {"x1", "x2", "cat", "noise"} and next(iter(perm)) == "x1"
    assert perm["x1"] > 10 * max(perm["noise"], 1e-4) and perm["x1"] > perm["x2"] > perm["noise"]
    gain = cv["importance"]["lightgbm_gain"]
    assert abs(sum(gain.values()) - 1) < 1e-9 and max(gain, key=gain.get) == "x1"
    assert res.cv["importance"] == cv["importance"]
    # `trainmedic report DIR` draws the same page again from the folder (oof.json holds the per-row data)
    assert rebuilt_figures(tmp_path) == set(imgs)


def rebuilt_figures(folder):
    import contextlib
    import os
    from argparse import Namespace

    from trainmedic.commands.report import run as report

    os.remove(folder / "report.html")
    with contextlib.redirect_stdout(io.StringIO()):
        assert report(Namespace(dir=str(folder), output=None, json=False)) == 0
    return set(images((folder / "report.html").read_text()))


def test_house_report_names_the_worst_houses(tmp_path, house_small_csv):
    train, _ = house_small_csv
    res = fit_table(train, "SalePrice", out=tmp_path, config=fast_config(**CFG))
    html = (tmp_path / "report.html").read_text()
    assert "Largest out-of-fold errors of the blend" in html
    y, blend = res.y, res.oof["blend"]
    worst = int(np.argmax(np.abs(y - blend)))
    house_id = res.plots["ids"][worst]  # the Id column of that house, as in the data
    row = re.search(r"<tr><td class=\"l\">(\d+)</td><td>([0-9.]+)</td><td>([0-9.]+)</td>", html)
    assert int(row.group(1)) == house_id and abs(float(row.group(2)) - y[worst]) < 1e-4
    assert abs(float(row.group(3)) - blend[worst]) < 1e-4


def test_a_fit_folder_without_oof_json_is_rebuilt_without_the_row_figures_and_says_so(tmp_path):
    fit_table(synthetic(200, "regression"), "y", out=tmp_path, config=fast_config(**CFG))
    (tmp_path / "oof.json").unlink()
    figures = rebuilt_figures(tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert figures == COMMON and "without oof.json" in html and "Model comparison" in html
