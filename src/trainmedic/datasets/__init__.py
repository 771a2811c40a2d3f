"""Small data sets shipped with trainmedic for the demo, the tests and the benchmarks.

- ``house_prices_train()`` / ``house_prices_test()``: the Kaggle "House Prices" files used by practitioner
  note 001 (d2l), 1460 + 1459 rows, target ``SalePrice``, id ``Id``.
- ``doctor_visits()``: the AER DoctorVisits survey (Cameron & Trivedi), 5190 rows, target ``visits``
  (a sparse count, 80 % zeros: the case of practitioner note 000).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["doctor_visits", "house_prices_test", "house_prices_train", "path"]


def path(*parts: str) -> Path:
    """Filesystem path of a file shipped in ``trainmedic/datasets``."""
    ref = resources.files(__name__).joinpath(*parts)
    p = Path(str(ref))
    if not p.is_file():
        raise FileNotFoundError(f"trainmedic data file {'/'.join(parts)} is missing from the installation")
    return p


def house_prices_train() -> Path:
    return path("house_prices", "train.csv")


def house_prices_test() -> Path:
    return path("house_prices", "test.csv")


def doctor_visits() -> Path:
    return path("doctor_visits", "DoctorVisits.csv")
