import numpy as np
import pandas as pd
import pytest

from trainmedic.errors import UsageError
from trainmedic.tabular.target import infer_task, resolve_task, target_array


@pytest.mark.parametrize(
    "values, kind",
    [
        (np.exp(np.random.default_rng(0).normal(12, 0.5, 500)).round(), "log-regression"),
        (np.random.default_rng(0).poisson(0.3, 500), "count"),
        (np.random.default_rng(0).normal(size=500), "regression"),
        (np.random.default_rng(0).integers(0, 2, 500), "binary"),
        (np.random.default_rng(0).integers(0, 4, 500), "multiclass"),
        (np.random.default_rng(0).choice(["a", "b", "c"], 500), "multiclass"),
        (np.random.default_rng(0).choice(["yes", "no"], 500), "binary"),
    ],
)
def test_infer_task(values, kind):
    assert infer_task(pd.Series(values, name="t")).kind == kind


def test_one_value_and_free_text_are_errors():
    with pytest.raises(UsageError, match="single value"):
        infer_task(pd.Series([1.0] * 20, name="t"))
    with pytest.raises(UsageError, match="text"):
        infer_task(pd.Series([f"w{i}" for i in range(200)], name="t"))


def test_resolve_task_checks_the_override():
    y = pd.Series(["a", "b", "c"] * 10, name="t")
    with pytest.raises(UsageError, match="numeric target"):
        resolve_task(y, "regression")
    with pytest.raises(UsageError, match="positive"):
        resolve_task(pd.Series(np.linspace(-1, 1, 30), name="t"), "log-regression")
    with pytest.raises(UsageError, match="non-negative integers"):
        resolve_task(pd.Series(np.linspace(0, 1, 30), name="t"), "count")
    assert resolve_task(pd.Series(np.arange(30.0) + 1, name="t"), "log-regression").kind == "log-regression"


def test_target_array_classes_and_bad_rows():
    y = pd.Series(["b", "a", None, "b"], name="t")
    info = resolve_task(y, None)
    v, ok = target_array(y, info)
    assert info.classes == ["a", "b"]
    assert ok.tolist() == [True, True, False, True] and v[ok].tolist() == [1, 0, 1]
    y2 = pd.Series([1.0, np.inf, 3.0, np.nan, 5.0, 10.0, 20.0, 300.0], name="t")
    v2, ok2 = target_array(y2, resolve_task(y2, "regression"))
    assert ok2.tolist() == [True, False, True, False, True, True, True, True]
