"""Tabular front end: ``check-data`` (data rules TM101-TM115 and TM118) and ``fit`` (cross-validated models)."""

from __future__ import annotations

from typing import Any

__all__ = ["FitConfig", "check_data", "fit_table", "read_table", "run_demo_fit"]


def __getattr__(name: str) -> Any:
    # Lazy: importing trainmedic.tabular (the CLI does) must not import torch, sklearn or lightgbm.
    if name == "check_data":
        from trainmedic.tabular.checks import check_data

        return check_data
    if name in ("fit_table", "FitConfig", "run_demo_fit"):
        from trainmedic.tabular import fit

        return getattr(fit, name)
    if name == "read_table":
        from trainmedic.tabular.io import read_table

        return read_table
    raise AttributeError(name)
