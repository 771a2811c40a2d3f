"""Reading real-world tables robustly.

CSV files are typed column by column by trainmedic, as if every cell were read as text (a column pandas
parses as plain finite numbers is taken as parsed: the same values, without a string per cell), so that:

- a UTF-8 byte-order mark, a Windows-1252 file, a ``;`` / tab / ``|`` separator and a decimal comma are
  recognised (sniffed from the first lines);
- numbers written with thousands separators ("1,234", "1 234") or stray spaces become numbers;
- a text column keeps the literal categories "None", "NA", "null"... that pandas would have read as missing
  (MasVnrType "None" in the house-price data): they are recorded for TM115;
- in numeric columns those tokens are missing values, as pandas would read them.

What was done is kept in a :class:`ReadReport`, from which ``check-data`` reports TM103 and TM115.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainmedic.errors import UsageError

# pandas' default ``na_values`` (pandas._libs.parsers.STR_NA_VALUES), kept here to avoid a private import.
NA_TOKENS = frozenset(
    {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
        "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    }
)  # fmt: skip

_SEPARATORS = (",", ";", "\t", "|")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_THOUSANDS = {
    ",": re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$"),
    " ": re.compile(r"^[+-]?\d{1,3}([ \u00a0\u202f]\d{3})+([.,]\d+)?$"),
    "'": re.compile(r"^[+-]?\d{1,3}('\d{3})+(\.\d+)?$"),
    ".": re.compile(r"^[+-]?\d{1,3}(\.\d{3})+(,\d+)?$"),  # 1.234,5 (with a decimal comma)
}
_DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+$")


@dataclass
class ReadReport:
    """How a table was read: what check-data needs to explain (TM103, TM115) and to reproduce the read."""

    source: str
    format: str = "csv"
    encoding: str | None = None
    bom: bool = False
    sep: str | None = None
    decimal: str = "."
    rows: int = 0
    columns: int = 0
    # columns read as numbers only after removing thousands separators / spaces: {col: {"examples": [...]}}
    converted: dict[str, dict[str, Any]] = field(default_factory=dict)
    # text columns where literal NA-like tokens were kept as categories: {col: {token: count}}
    na_literals: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "encoding": self.encoding,
            "bom": self.bom,
            "sep": self.sep,
            "decimal": self.decimal,
            "rows": self.rows,
            "columns": self.columns,
        }


def read_table(path: str | Path) -> tuple[pd.DataFrame, ReadReport]:
    """Read a CSV (any common dialect) or Parquet file. Raises UsageError on unusable input."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such file; give the path of a CSV or Parquet file")
    if p.is_dir():
        raise UsageError(f"{p} is a directory; give the path of a CSV or Parquet file")
    if p.stat().st_size == 0:
        raise UsageError(f"{p} is empty (0 bytes); give a file with a header line and data rows")
    if p.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(p)
    return _read_csv(p)


def load_frame(obj: str | Path | pd.DataFrame, what: str = "data") -> tuple[pd.DataFrame, ReadReport]:
    """A path or a DataFrame → (DataFrame, ReadReport). DataFrames are used as they are."""
    if isinstance(obj, pd.DataFrame):
        df = obj.copy()
        df.columns = [str(c) for c in df.columns]
        rep = ReadReport(source=f"<{what} DataFrame>", format="frame", rows=len(df), columns=df.shape[1])
        if df.shape[1] == 0 or len(df) == 0:
            raise UsageError(f"the {what} DataFrame has no rows or no columns")
        return df, rep
    return read_table(obj)


# ----------------------------------------------------------------------------------------------------------


def _read_parquet(p: Path) -> tuple[pd.DataFrame, ReadReport]:
    try:
        df = pd.read_parquet(p)
    except ImportError as exc:
        raise UsageError(f"{p}: reading Parquet needs pyarrow (`pip install pyarrow`): {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any parse failure is a user-facing "cannot read"
        raise UsageError(f"{p}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    df.columns = [str(c) for c in df.columns]
    if df.shape[1] == 0 or len(df) == 0:
        raise UsageError(f"{p} has no data rows; give a file with a header and at least one row")
    return df, ReadReport(source=str(p), format="parquet", rows=len(df), columns=df.shape[1])


def _decode(raw: bytes, p: Path) -> tuple[str, str, bool]:
    bom = raw.startswith(b"\xef\xbb\xbf")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "utf-16", True
    if b"\x00" in raw[:4096]:
        raise UsageError(f"{p} looks like a binary file, not CSV text; give a CSV or Parquet file")
    try:
        return raw.decode("utf-8-sig"), "utf-8", bom
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), "cp1252", False


def sniff_separator(text: str) -> str:
    """The separator that splits the first lines into the same number (>1) of fields most consistently."""
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    if not lines:
        return ","
    best, best_score = ",", (-1.0, 0)
    for sep in _SEPARATORS:
        try:
            counts = [len(r) for r in csv.reader(io.StringIO("\n".join(lines)), delimiter=sep)]
        except csv.Error:
            continue
        if not counts or counts[0] <= 1:
            continue
        consistent = sum(c == counts[0] for c in counts) / len(counts)
        score = (consistent, counts[0])
        if score > best_score:
            best, best_score = sep, score
    return best


def _read_csv(p: Path) -> tuple[pd.DataFrame, ReadReport]:
    raw = p.read_bytes()
    text, encoding, bom = _decode(raw, p)
    if not text.strip():
        raise UsageError(f"{p} is empty (only whitespace); give a file with a header line and data rows")
    sep = sniff_separator(text)
    opts = dict(sep=sep, keep_default_na=False, na_values=[], skip_blank_lines=True)
    buf = io.StringIO(text)  # one copy of the text (a large file's is 100 MB), rewound for each reading

    def reread(**kw: Any) -> pd.DataFrame:
        buf.seek(0)
        return pd.read_csv(buf, **opts, **kw)

    try:
        head = reread(dtype=str, nrows=200)
        # Every column is typed as reading every cell as text would type it; pandas' own number parsing is
        # used first because reading every cell of a large numeric file as a string took 25 s of a 200k x 50
        # file's 26 s (the whole budget of a 133 s fit had a quarter gone before any model trained).
        with warnings.catch_warnings():  # a column typed differently by chunk is read again as text below
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            fast = reread()
    except pd.errors.EmptyDataError:
        raise UsageError(f"{p} has no header line; give a CSV with column names on its first line") from None
    except (pd.errors.ParserError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{p}: cannot parse as CSV with separator {sep!r} ({msg})") from None
    if len(fast) == 0:
        raise UsageError(f"{p} has a header but no data rows; give a file with at least one row")
    names = [str(c).strip() for c in fast.columns]
    rep = ReadReport(source=str(p), encoding=encoding, bom=bom, sep=sep, rows=len(fast), columns=fast.shape[1])
    head.columns = names
    rep.decimal = _sniff_decimal(head) if sep != "," else "."
    numbers = [_plain_numbers(fast.iloc[:, i]) for i in range(fast.shape[1])]
    strings = [not numbers[i] and pd.api.types.infer_dtype(fast.iloc[:, i], skipna=False) == "string"
               for i in range(fast.shape[1])]
    # booleans, non-finite numbers, integers past int64, columns typed differently by chunk: read as text
    as_text = [i for i in range(fast.shape[1]) if not numbers[i] and not strings[i]]
    again = reread(dtype=str, usecols=as_text) if as_text else None
    out: dict[int, pd.Series] = {}
    for i in range(fast.shape[1]):  # in column order: the report lists conversions in that order
        s = fast.iloc[:, i]
        if numbers[i]:
            out[i] = _as_number(s.astype("float64"), pd.Series(False, index=s.index), s.index, names[i])
        else:
            col = s.astype(str) if strings[i] else again.iloc[:, as_text.index(i)]
            out[i] = _type_column(col.rename(names[i]), names[i], rep)
    typed = pd.DataFrame({i: out[i] for i in range(fast.shape[1])}, index=fast.index)
    typed.columns = names
    return typed, rep


def _plain_numbers(s: pd.Series) -> bool:
    """A column pandas read as finite int64 / float64 numbers: every cell a plain number, none missing.

    Those are the columns the text reading types with ``to_numeric`` (same values: tested against it on
    the shipped files); anything else there (a boolean, "inf", an empty cell) goes through ``_type_column``.
    """
    if s.dtype not in (np.dtype("int64"), np.dtype("float64")):
        return False
    return bool(np.isfinite(s.to_numpy(dtype="float64")).all())


def _sniff_decimal(df: pd.DataFrame) -> str:
    comma = dot = 0
    for col in df.columns[:200]:
        vals = df[col].head(200).str.strip()
        comma += int(vals.str.match(_DECIMAL_COMMA).sum())
        dot += int(vals.str.match(r"^[+-]?\d*\.\d+$").sum())
    return "," if comma > 0 and comma > 4 * dot else "."


def _type_column(s: pd.Series, col: str, rep: ReadReport) -> pd.Series:
    stripped = s.str.strip()
    na = stripped.isin(NA_TOKENS)
    vals = stripped[~na]
    if vals.empty:
        return pd.Series(np.nan, index=s.index, dtype="float64", name=col)
    cand = vals.str.replace(",", ".", regex=False) if rep.decimal == "," else vals
    if cand.str.match(_PLAIN_NUMBER).all():
        return _as_number(pd.to_numeric(cand), na, s.index, col)
    # thousands separators: every non-missing value is a number, some written with separators
    for sep_char, pattern in _THOUSANDS.items():
        if sep_char == "." and rep.decimal != ",":
            continue
        if sep_char == "," and rep.decimal == ",":
            continue
        with_sep = vals.str.match(pattern)
        if not with_sep.any():
            continue
        plain = cand.str.match(_PLAIN_NUMBER)
        if not (with_sep | plain).all():
            continue
        cleaned = vals.str.replace(r"[,\s'\u00a0\u202f]", "", regex=True) if sep_char != "." else (
            vals.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        )
        cleaned = cleaned.where(with_sep, cand)
        rep.converted[col] = {
            "reason": f"thousands separator {sep_char!r}",
            "examples": vals[with_sep].head(3).tolist(),
        }
        return _as_number(pd.to_numeric(cleaned), na, s.index, col)
    # a text column: only empty cells are missing; literal NA-like words stay categories
    empty = stripped == ""
    literal = stripped[na & ~empty]
    if not literal.empty:
        rep.na_literals[col] = {str(k): int(v) for k, v in literal.value_counts().items()}
    return s.where(~empty, np.nan).rename(col)


def _as_number(values: pd.Series, na: pd.Series, index: pd.Index, col: str) -> pd.Series:
    out = pd.Series(np.nan, index=index, dtype="float64", name=col)
    out[~na] = values.astype("float64").to_numpy()
    finite = out.dropna()
    if not na.any() and len(finite) and np.all(np.isfinite(finite)) and np.all(finite == np.round(finite)):
        if finite.abs().max() < 2**62:
            return out.astype("int64")
    return out
