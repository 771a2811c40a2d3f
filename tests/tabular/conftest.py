"""Shared helpers for the tabular tests: small, fast settings (the whole folder runs in about a minute)."""

from __future__ import annotations

import pandas as pd
import pytest

from trainmedic import datasets


@pytest.fixture(scope="session")
def house() -> pd.DataFrame:
    from trainmedic.tabular.io import read_table

    return read_table(datasets.house_prices_train())[0]


@pytest.fixture(scope="session")
def house_small_csv(tmp_path_factory, house) -> tuple[str, str]:
    """(train, test) CSVs: 240 training rows of the house data, 40 test rows without the target."""
    d = tmp_path_factory.mktemp("house")
    raw = pd.read_csv(datasets.house_prices_train(), keep_default_na=False, dtype=str)
    raw.iloc[:240].to_csv(d / "train.csv", index=False)
    raw.iloc[240:280].drop(columns=["SalePrice"]).to_csv(d / "test.csv", index=False)
    return str(d / "train.csv"), str(d / "test.csv")
