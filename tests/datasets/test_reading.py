"""Dataset reading and validation, bundled datasets and feature profiles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelport.datasets.bundled import BUNDLED, bundled_info, bundled_table, is_bundled
from modelport.datasets.profile import QUANTILES, profile
from modelport.datasets.reading import describe, inspect, read_table, sniff_format
from modelport.errors import InvalidInput, NotFound


def write(tmp_path: Path, content: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def refused(path: Path, **limits: int) -> str:
    with pytest.raises(InvalidInput) as caught:
        inspect(path, **limits)
    return caught.value.message


def schema(info: object) -> dict[str, dict[str, object]]:
    described = info.as_dict()  # type: ignore[attr-defined]
    return {c["name"]: c for c in described["schema"]}


GOOD = (
    "id,score,flag,city,when,empty\n"
    "1,1e5,true,Paris,2024-01-01,\n"
    "2,3.0,false,,2024-01-02,\n"
    "3,-1.5,TRUE,Oslo,2024-01-03,\n"
    "4,,false,Paris,2024-01-04,\n"
)


def test_good_csv_types_counts_preview(tmp_path: Path) -> None:
    info = inspect(write(tmp_path, GOOD))
    assert info.format == "csv" and info.rows == 4
    cols = schema(info)
    assert [c["type"] for c in cols.values()] == ["integer", "float", "boolean", "string", "string", "string"]
    assert cols["score"] == {"name": "score", "type": "float", "nulls": 1, "distinct": 3}
    assert cols["city"]["nulls"] == 1 and cols["city"]["distinct"] == 2
    assert cols["empty"]["nulls"] == 4 and cols["empty"]["distinct"] == 0
    described = info.as_dict()
    assert described["columns"] == 6
    assert described["preview"][0] == {
        "id": 1,
        "score": 100000.0,
        "flag": True,
        "city": "Paris",
        "when": "2024-01-01",  # dates stay as written
        "empty": None,
    }
    assert len(described["preview"]) == 4
    json.dumps(described, allow_nan=False)
    table = read_table(tmp_path / "data.csv", "csv")
    assert table.column("when").type == pa.string() and table.num_rows == 4


def test_preview_is_five_rows_text_cut_and_nan_none(tmp_path: Path) -> None:
    rows = "".join(f"{i},{'x' * 300},NaN\n" for i in range(8))
    info = inspect(write(tmp_path, "a,b,c\n" + rows))
    assert len(info.preview) == 5
    assert len(info.preview[0]["b"]) == 200
    assert info.preview[0]["c"] is None
    assert schema(info)["c"]["nulls"] == 8 and schema(info)["c"]["distinct"] == 0


def test_quoted_fields_with_commas_and_newlines(tmp_path: Path) -> None:
    content = 'name,note\n"Smith, John","line one\nline two"\n"Doe",plain\r\n"a ""quote""",x\n'
    info = inspect(write(tmp_path, content))
    assert info.rows == 3
    assert info.preview[0] == {"name": "Smith, John", "note": "line one\nline two"}
    assert info.preview[2]["name"] == 'a "quote"'


def test_bom_is_stripped(tmp_path: Path) -> None:
    info = inspect(write(tmp_path, b"\xef\xbb\xbfa,b\n1,x\n"))
    assert [c.name for c in info.columns] == ["a", "b"]


def test_parquet_round_trip(tmp_path: Path) -> None:
    table = pa.table(
        {
            "i": pa.array([1, 2, None], pa.int32()),
            "u": pa.array([1, 2, 3], pa.uint8()),
            "f": [0.5, float("nan"), 2.0],
            "b": [True, None, False],
            "s": pa.array(["a", "b", "a"]).dictionary_encode(),
            "t": pa.array([0, 1, 2], pa.timestamp("s")),
            "d": pa.array([1, 2, 3], pa.decimal128(5, 2)),
            "n": pa.array([None, None, None], pa.null()),
        }
    )
    path = tmp_path / "data.bin"
    pq.write_table(table, path)
    assert sniff_format(path) == "parquet"
    info = inspect(path)
    assert info.format == "parquet" and info.rows == 3
    cols = schema(info)
    assert {n: c["type"] for n, c in cols.items()} == {
        "i": "integer",
        "u": "integer",
        "f": "float",
        "b": "boolean",
        "s": "string",
        "t": "string",
        "d": "float",
        "n": "string",
    }
    assert cols["i"]["nulls"] == 1 and cols["f"]["nulls"] == 1 and cols["s"]["distinct"] == 2
    assert info.preview[0]["t"].startswith("1970-01-01 00:00:00")
    assert info.preview[0]["d"] == 1.0
    read = read_table(path, "parquet")
    assert read.column("s").type == pa.string() and read.column("d").type == pa.float64()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        ("a,b,c\n", "header but no data rows"),
        ("a,,c\n1,2,3\n", "column 2 of the header has no name"),
        ("a,b,a\n1,2,3\n", "column 3 of the header repeats the name 'a' of column 1"),
        ("a,b,c,d,e\n" + "1,2,3,4,5\n" * 6 + "1,2,3,4\n", "row 7 has 4 fields, the header has 5 (line 8)"),
        ('a,b\n"x\ny",1\n1,2,3\n', "row 2 has 3 fields, the header has 2 (line 4)"),
        ('a,b\n1,"x"y\n', "malformed CSV at line 2"),
    ],
)
def test_bad_csv_structure_names_the_fault(tmp_path: Path, content: str, expected: str) -> None:
    assert expected in refused(write(tmp_path, content))


def test_wrong_encoding_names_line_and_offset(tmp_path: Path) -> None:
    content = b"a,b\n1,caf\xc3\xa9\n2,caf\xe9\n"  # UTF-8 on line 2, Latin-1 on line 3
    message = refused(write(tmp_path, content))
    assert (
        "not UTF-8" in message and "line 3" in message and "byte offset 17" in message and "0xe9" in message
    )


def test_encoding_error_beyond_the_first_chunk(tmp_path: Path) -> None:
    body = "a\n" + "é\n" * 700_000  # multi-byte characters cut at chunk boundaries are not errors
    path = write(tmp_path, body.encode() + b"\xff\n")
    message = refused(path)
    assert f"line {700_002}" in message and f"byte offset {len(body.encode())}" in message


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_injection_refused(tmp_path: Path, start: str) -> None:
    cell = f'"{start}HYPERLINK(1)"'
    message = refused(write(tmp_path, f"id,name\n1,ok\n2,{cell}\n"))
    assert "row 2, column 'name'" in message and "formula" in message


def test_numbers_with_signs_are_not_formulas(tmp_path: Path) -> None:
    info = inspect(write(tmp_path, "id,mixed\n1,-1.5\n2,+3\n3,abc\n4,-2e5\n"))
    assert schema(info)["mixed"]["type"] == "string"


def test_formula_injection_in_parquet(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3], "s": ["a", "b", "@SUM(A1)"]}), path)
    assert "row 3, column 's'" in refused(path)


def test_fake_parquet(tmp_path: Path) -> None:
    assert "not a valid Parquet file" in refused(write(tmp_path, b"PAR1 this is not parquet at all"))


@pytest.mark.parametrize(
    ("column", "type_name"),
    [
        (pa.array([[1], [2]]), "list"),
        (pa.array([{"x": 1}, {"x": 2}]), "struct"),
        (pa.array([b"a", b"b"]), "binary"),
    ],
)
def test_unsupported_parquet_types(tmp_path: Path, column: pa.Array, type_name: str) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"ok": [1, 2], "bad": column}), path)
    message = refused(path)
    assert "column 'bad'" in message and type_name in message


def test_parquet_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"x": pa.array([], pa.int64())}), path)
    assert "no data rows" in refused(path)


def test_limits(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "a,b,c\n" + "1,2,3\n" * 11)
    assert inspect(csv_path, max_rows=11, max_columns=3).rows == 11
    assert "more than 10 rows" in refused(csv_path, max_rows=10)
    assert "3 columns, more than the limit of 2" in refused(csv_path, max_columns=2)
    parquet_path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"a": list(range(11)), "b": list(range(11))}), parquet_path)
    assert "11 rows, more than the limit of 10" in refused(parquet_path, max_rows=10)
    assert "2 columns, more than the limit of 1" in refused(parquet_path, max_columns=1)


def test_large_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 640_000
    ints, floats = rng.integers(0, 1_000_000, n), rng.normal(size=n)
    cats = np.array(["alpha", "beta", "gamma", "delta"])[rng.integers(0, 4, n)]
    lines = [f"{i},{f:.6f},{c},{c}-{i % 997}\n" for i, f, c in zip(ints, floats, cats, strict=True)]
    path = write(tmp_path, "i,f,c,t\n" + "".join(lines) + "1,2.0,late text,=cmd\n")
    assert path.stat().st_size > 20_000_000
    message = refused(path)  # the one bad cell is the very last
    assert f"row {n + 1}, column 't'" in message
    path = write(tmp_path, "i,f,c,t\n" + "".join(lines) + "1,2.0,late text,x\n")
    info = inspect(path)
    assert info.rows == n + 1
    assert [c.type for c in info.columns] == ["integer", "float", "string", "string"]
    assert schema(info)["c"]["distinct"] == 5


def test_import_does_not_load_pyarrow() -> None:
    code = "import sys, modelport.datasets.reading, modelport.datasets.bundled, modelport.datasets.profile\n"
    code += "assert 'pyarrow' not in sys.modules and 'sklearn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bundled_iris_and_diabetes() -> None:
    assert is_bundled("sklearn:iris") and not is_bundled("iris")
    assert set(BUNDLED) == {"iris", "wine", "breast_cancer", "digits", "diabetes"}
    iris = bundled_table("iris")
    assert iris.shape == (150, 5)
    assert iris.column_names[0] == "sepal length (cm)" and iris.column_names[-1] == "target"
    assert iris.column("target").type == pa.int64()
    assert sorted(set(iris.column("target").to_pylist())) == [0, 1, 2]
    diabetes = bundled_table("diabetes")
    assert diabetes.shape == (442, 11) and diabetes.column("target").type == pa.float64()
    digits = bundled_table("digits")
    assert digits.shape == (1797, 65) and digits.column_names[0] == "pixel_0_0"
    info = bundled_info("iris")
    assert info.format == "sklearn" and info.rows == 150 and len(info.preview) == 5
    assert schema(info)["target"] == {"name": "target", "type": "integer", "nulls": 0, "distinct": 3}


def test_unknown_bundled_name() -> None:
    with pytest.raises(NotFound) as caught:
        bundled_table("titanic")
    assert "sklearn:titanic" in caught.value.message and "sklearn:iris" in caught.value.message


def test_profile_numeric_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(10, 3, 1000)
    column = pa.array([*values.tolist(), None, float("nan")])
    result = profile(pa.table({"x": column}), ["x"], bins=8)
    feature = result["features"]["x"]
    assert result["rows"] == 1002
    assert feature["kind"] == "numeric" and feature["count"] == 1000 and feature["nulls"] == 2
    assert feature["mean"] == pytest.approx(values.mean()) and feature["std"] == pytest.approx(values.std())
    assert feature["min"] == values.min() and feature["max"] == values.max()
    for q in QUANTILES:
        assert feature["quantiles"][str(q)] == pytest.approx(np.quantile(values, q))
    counts, edges = np.histogram(values, bins=8)
    assert feature["counts"] == counts.tolist() and feature["bins"] == pytest.approx(edges.tolist())
    json.dumps(result, allow_nan=False)


def test_profile_categorical_and_edge_cases() -> None:
    words = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"] + [None] * 2
    table = pa.table(
        {
            "w": words,
            "flag": [True, False, True] + [None] * 11,
            "none": pa.array([None] * 14, pa.float64()),
            "same": [7] * 14,
        }
    )
    result = profile(table, ["w", "flag", "none", "same"], top=2)
    w = result["features"]["w"]
    assert w == {"kind": "categorical", "count": 12, "nulls": 2, "values": {"a": 5, "b": 3}, "other": 4}
    assert result["features"]["flag"]["values"] == {"true": 2, "false": 1}
    none = result["features"]["none"]
    assert none["count"] == 0 and none["mean"] is None and none["counts"] == []
    same = result["features"]["same"]
    assert same["std"] == 0.0 and sum(same["counts"]) == 14
    json.dumps(result, allow_nan=False)
    with pytest.raises(InvalidInput, match="no column 'nope'"):
        profile(table, ["nope"])


def test_describe_is_shared() -> None:
    table = pa.table({"x": [1.0, float("inf")], "s": ["a", None]})
    info = describe(table, "csv")
    assert info.preview == [{"x": 1.0, "s": "a"}, {"x": None, "s": None}]
    assert schema(info)["s"] == {"name": "s", "type": "string", "nulls": 1, "distinct": 1}
