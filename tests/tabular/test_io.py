import numpy as np
import pandas as pd
import pytest

from trainmedic import datasets
from trainmedic.errors import UsageError
from trainmedic.tabular.io import read_table, sniff_separator


def write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_text(text, encoding=encoding)
    return p


def test_bom_semicolon_decimal_comma(tmp_path):
    p = write(tmp_path, "a.csv", "price;name;qty\n1.234,5;x;3\n2,5;y;4\n3;z;5\n", encoding="utf-8-sig")
    df, rep = read_table(p)
    assert list(df.columns) == ["price", "name", "qty"]  # the BOM is not part of the first name
    assert rep.bom and rep.sep == ";" and rep.decimal == ","
    assert df["price"].tolist() == [1234.5, 2.5, 3.0]
    assert pd.api.types.is_integer_dtype(df["qty"])


def test_thousands_separator_and_spaces(tmp_path):
    p = write(tmp_path, "b.csv", 'a,b\n"1,234", 12 \n"12,000",7\n5,8\n')
    df, rep = read_table(p)
    assert df["a"].tolist() == [1234, 12000, 5]
    assert df["b"].tolist() == [12, 7, 8]
    assert "a" in rep.converted


def test_none_category_kept_in_text_columns_but_missing_in_numbers(tmp_path):
    p = write(tmp_path, "c.csv", "kind,area\nNone,1\nBrick,NA\nNone,3\n,4\n")
    df, rep = read_table(p)
    assert df["kind"].tolist()[:3] == ["None", "Brick", "None"]
    assert pd.isna(df["kind"].iloc[3])  # an empty cell is still missing
    assert np.isnan(df["area"].iloc[1])
    assert rep.na_literals == {"kind": {"None": 2}}


def test_house_masvnrtype_none_is_a_category():
    df, rep = read_table(datasets.house_prices_train())
    assert (df["MasVnrType"] == "None").sum() == 864
    assert rep.na_literals["MasVnrType"]["None"] == 864
    assert pd.api.types.is_numeric_dtype(df["LotFrontage"]) and df["LotFrontage"].isna().sum() == 259
    assert df.shape == (1460, 81)


def test_mixed_column_stays_text(tmp_path):
    p = write(tmp_path, "d.csv", "v\n" + "\n".join(["1", "2", "3", "?", "5"]) + "\n")
    df, _ = read_table(p)
    assert not pd.api.types.is_numeric_dtype(df["v"])


@pytest.mark.parametrize(
    "text, match",
    [("", "empty"), ("   \n  \n", "empty"), ("a,b,c\n", "no data rows")],
)
def test_unusable_files(tmp_path, text, match):
    p = write(tmp_path, "e.csv", text)
    with pytest.raises(UsageError, match=match):
        read_table(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(UsageError, match="directory"):
        read_table(tmp_path)


def test_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})
    df.to_parquet(tmp_path / "f.parquet")
    out, rep = read_table(tmp_path / "f.parquet")
    assert rep.format == "parquet" and out.shape == (3, 2)


def test_sniff_separator():
    assert sniff_separator("a;b;c\n1;2;3\n") == ";"
    assert sniff_separator("a\tb\n1\t2\n") == "\t"
    assert sniff_separator('a,b\n"x;y",2\n') == ","


def text_reference(path, sep=","):
    """What the reader gives when every cell is read as a string and typed column by column (the reading
    ``read_table`` replaced by pandas' number parsing where that is the same, for speed on large files)."""
    from trainmedic.tabular.io import ReadReport, _sniff_decimal, _type_column

    raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[], skip_blank_lines=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    rep = ReadReport(source=str(path), sep=sep)
    rep.decimal = _sniff_decimal(raw) if sep != "," else "."
    return pd.DataFrame({c: _type_column(raw[c], c, rep) for c in raw.columns}), rep


ODD_CELLS = [".", "-", "1e", "1.", ".5", "+.5", " 5 ", "1_000", "inf", "-inf", "Infinity", "nan", "NA", "",
             "True", "false", "0x10", "1,5", "1 234", "007", "1E+05", "9223372036854775808", "-0", "1.0",
             "None", "1d3", "1e400"]


@pytest.mark.parametrize("sep", [",", ";"])
def test_read_table_types_every_column_as_the_text_reading_would(tmp_path, sep):
    # one column per odd cell, the cell among plain numbers; every column must come out as the text reading
    # types it (numbers, missing values, text, converted thousands), with the same report
    rows = 7
    cols = {f"c{i}": ["1", "2.5", "3"] * 2 + [cell] for i, cell in enumerate(ODD_CELLS)}
    cols["plain"] = [str(v) for v in range(rows)]
    cols["flt"] = [f"{v / 3:.17g}" for v in range(rows)]

    def cell(v):
        return f'"{v}"' if sep in v else v

    text = sep.join(cols) + "\n" + "\n".join(sep.join(cell(cols[c][r]) for c in cols) for r in range(rows)) + "\n"
    path = write(tmp_path, "odd.csv", text)
    got, rep = read_table(path)
    want, ref = text_reference(path, sep)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert rep.converted == ref.converted and rep.na_literals == ref.na_literals and rep.decimal == ref.decimal


def test_read_table_column_with_text_deep_in_a_large_file(tmp_path):
    # pandas reads a large file in chunks: a column that is numbers in the first chunk and text in a later
    # one comes back mixed (with a DtypeWarning); it must be typed as text, silently, like the text reading
    n = 300_000
    a = np.arange(n).astype(str).astype(object)
    a[280_000] = "x"
    b = (np.arange(n) / 7).astype(str).astype(object)
    b[290_000] = ""
    path = tmp_path / "big.csv"
    pd.DataFrame({"a": a, "b": b, "c": np.arange(n) % 5}).to_csv(path, index=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, _ = read_table(path)
    want, _ = text_reference(path)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got["a"].dtype == want["a"].dtype and np.isnan(got["b"].iloc[290_000]) and got["c"].dtype == "int64"


def test_read_table_shipped_files_as_the_text_reading():
    for f in (datasets.house_prices_train(), datasets.doctor_visits()):
        got, rep = read_table(f)
        want, ref = text_reference(f)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert rep.na_literals == ref.na_literals
