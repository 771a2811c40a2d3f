"""Helpers shared by the tabular tests (a module with a unique name, importable next to the tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainmedic.tabular.fit import FitConfig
from trainmedic.tabular.models import GBMConfig, MLPConfig


def fast_config(**kw) -> FitConfig:
    """3 folds, a few epochs, a few boosting rounds: exercises every code path in seconds."""
    base = dict(
        folds=3,
        mlp=MLPConfig(max_epochs=6, patience=3, bags=1),
        gbm=GBMConfig(learning_rate=0.2, max_rounds=40, early_stopping=10, inner_folds=2),
        progress=False,
    )
    base.update(kw)
    return FitConfig(**base)


def synthetic(n: int = 300, kind: str = "regression", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    cat = rng.choice(["a", "b", "c"], size=n)
    eff = x1 + 0.5 * x2 + (cat == "a") * 0.8
    df = pd.DataFrame({"x1": x1, "x2": x2, "cat": cat})
    if kind == "regression":
        df["y"] = eff + rng.normal(scale=0.3, size=n)
    elif kind == "count":
        df["y"] = rng.poisson(np.exp(0.5 * eff - 1.0))
    elif kind == "binary":
        df["y"] = np.where(eff + rng.normal(scale=0.5, size=n) > 0.3, "yes", "no")
    elif kind == "multiclass":
        df["y"] = np.digitize(eff + rng.normal(scale=0.3, size=n), [-0.5, 0.5, 1.5]).astype(str)
        df["y"] = "class_" + df["y"]
    return df
