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
