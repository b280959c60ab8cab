"""Reading and validating an uploaded dataset (CSV or Parquet) before anything is stored.

Every refusal is an ``InvalidInput`` whose message names what is at fault. "Row N" always means the
N-th data row, counted from 1 after the header; CSV messages add the line of the file where they know it
(lines counted from 1, the header included). pyarrow is imported inside the functions: the server must
start without it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow

PREVIEW_ROWS = 5
TEXT_LIMIT = 200  # characters of a preview string, and of a cell quoted in a message
FORMATS = ("csv", "parquet")
_CHUNK = 1 << 20
_BLOCK = 8 << 20  # pyarrow needs a whole row inside one block when values may hold newlines
_TRUE = ["true", "True", "TRUE"]
_FALSE = ["false", "False", "FALSE"]
# OWASP CSV injection: a spreadsheet runs such a cell as a formula
_FORMULA = r"^[=+\-@\t\r]"
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # "integer", "float", "boolean" or "string"
    nulls: int  # missing values (NaN counts as missing)
    distinct: int  # distinct non-missing values

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "nulls": self.nulls, "distinct": self.distinct}


@dataclass(frozen=True)
class DatasetInfo:
    format: str  # "csv", "parquet" or "sklearn"
    rows: int
    columns: tuple[Column, ...]
    preview: list[dict[str, Any]]  # the first PREVIEW_ROWS rows, JSON-safe

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "rows": self.rows,
            "columns": len(self.columns),
            "schema": [c.as_dict() for c in self.columns],
            "preview": [dict(row) for row in self.preview],
        }


def sniff_format(path: Path) -> str:
    """``parquet`` when the file starts with Parquet's magic bytes, else ``csv``."""
    with path.open("rb") as f:
        return "parquet" if f.read(4) == b"PAR1" else "csv"


def inspect(path: Path, *, max_rows: int = 10_000_000, max_columns: int = 10_000) -> DatasetInfo:
    """Validate the file thoroughly and describe it: its columns' types and counts, and a preview."""
    if path.stat().st_size == 0:
        raise InvalidInput("the file is empty", field="file")
    format = sniff_format(path)
    if format == "parquet":
        table = _read_parquet(path, max_rows=max_rows, max_columns=max_columns)
    else:
        _scan_csv(path, max_rows=max_rows, max_columns=max_columns)
        table = _read_csv(path)
    _check_formulas(table)
    return describe(table, format)


def read_table(path: Path, format: str) -> pyarrow.Table:
    """The table ``inspect`` sees (same parsing, same column types), for training. The file is trusted
    to have passed ``inspect`` already, so the slow row-by-row CSV checks are skipped."""
    if format == "parquet":
        return _read_parquet(path, max_rows=None, max_columns=None)
    if format == "csv":
        return _read_csv(path)
    raise InvalidInput(f"unknown dataset format {format!r}; expected one of {', '.join(FORMATS)}")


def column_type(arrow_type: Any) -> str | None:
    """The dataset type of a (normalised) Arrow type, or None when it has none."""
    import pyarrow as pa

    t = pa.types
    if t.is_integer(arrow_type):
        return "integer"
    if t.is_floating(arrow_type) or t.is_decimal(arrow_type):
        return "float"
    if t.is_boolean(arrow_type):
        return "boolean"
    if t.is_string(arrow_type) or t.is_large_string(arrow_type):
        return "string"
    if t.is_dictionary(arrow_type):
        return column_type(arrow_type.value_type)
    return None


def describe(table: pyarrow.Table, format: str) -> DatasetInfo:
    """Column statistics and a preview of a table whose columns all have a dataset type."""
    columns = tuple(_describe_column(name, table.column(i)) for i, name in enumerate(table.column_names))
    rows = table.slice(0, PREVIEW_ROWS).to_pylist()
    preview = [{k: json_safe(v) for k, v in row.items()} for row in rows]
    return DatasetInfo(format=format, rows=table.num_rows, columns=columns, preview=preview)


def json_safe(value: Any) -> Any:
    """A preview value JSON can carry: long text cut, NaN and infinities as None."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    text = value if isinstance(value, str) else str(value)
    return text[:TEXT_LIMIT]


def _describe_column(name: str, column: Any) -> Column:
    import pyarrow.compute as pc

    kind = column_type(column.type)
    if kind is None:
        raise InvalidInput(f"column {name!r} has the unsupported type {column.type}", field="file")
    nulls = column.null_count
    distinct = pc.count_distinct(column, mode="only_valid").as_py()
    if kind == "float" and not _is_decimal(column.type):
        nan = pc.sum(pc.is_nan(column)).as_py() or 0
        nulls += nan
        distinct -= 1 if nan else 0  # every NaN hashes alike: one "distinct" value
    return Column(name=name, type=kind, nulls=nulls, distinct=distinct)


def _is_decimal(arrow_type: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_decimal(arrow_type))


def _check_names(names: list[str], max_columns: int | None) -> None:
    if max_columns is not None and len(names) > max_columns:
        raise InvalidInput(
            f"the file has {len(names)} columns, more than the limit of {max_columns}", field="file"
        )
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name.strip():
            raise InvalidInput(f"column {position} of the header has no name", field="file")
        if name in seen:
            raise InvalidInput(
                f"column {position} of the header repeats the name {name!r} of column {seen[name]}",
                field="file",
            )
        seen[name] = position


# --- CSV ---------------------------------------------------------------------------------------------


def _scan_csv(path: Path, *, max_rows: int, max_columns: int) -> int:
    """The structural checks pyarrow's errors cannot place: encoding, header, ragged rows, row limit.
    Returns the number of data rows. Blank lines are skipped, as pyarrow skips them."""
    header: list[str] | None = None
    rows = 0
    last_line = 0
    with path.open("r", encoding="utf-8-sig", errors="strict", newline="") as f:
        reader = csv.reader(f, strict=True)
        try:
            for record in reader:
                line, last_line = last_line + 1, reader.line_num  # a quoted value may span lines
                if not record:
                    continue
                if header is None:
                    _check_names(record, max_columns)
                    header = record
                    continue
                rows += 1
                if len(record) != len(header):
                    raise InvalidInput(
                        f"row {rows} has {len(record)} fields, the header has {len(header)} (line {line})",
                        field="file",
                    )
                if rows > max_rows:
                    raise InvalidInput(f"the file has more than {max_rows} rows, the limit", field="file")
        except UnicodeDecodeError:
            raise _encoding_error(path) from None
        except csv.Error as exc:
            raise InvalidInput(f"malformed CSV at line {reader.line_num}: {exc}", field="file") from None
    if header is None:
        raise InvalidInput("the file is empty: no header", field="file")
    if rows == 0:
        raise InvalidInput("the file has a header but no data rows", field="file")
    return rows


def _encoding_error(path: Path) -> InvalidInput:
    """Where the first byte that is not UTF-8 lies (only called once decoding has failed)."""
    base = 0  # file offset of data[0]
    newlines = 0
    pending = b""
    with path.open("rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            data = pending + chunk
            if not data:
                break
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                if chunk and exc.end == len(data) and exc.reason == "unexpected end of data":
                    good = exc.start  # a character cut by the chunk's end: decide with the next chunk
                else:
                    line = newlines + data.count(b"\n", 0, exc.start) + 1
                    return InvalidInput(
                        f"the file is not UTF-8: byte 0x{data[exc.start]:02x} at line {line} "
                        f"(byte offset {base + exc.start}) cannot be decoded; save it as UTF-8",
                        field="file",
                    )
            else:
                good = len(data)
            newlines += data.count(b"\n", 0, good)
            base += good
            pending = data[good:]
            if not chunk:
                break
    return InvalidInput("the file is not UTF-8; save it as UTF-8", field="file")


def _read_csv(path: Path) -> pyarrow.Table:
    import pyarrow as pa

    table = _arrow_csv(path, {})
    # dates and times stay text, as written: re-read those columns as strings rather than re-format them
    temporal = {f.name: pa.string() for f in table.schema if _is_temporal(f.type)}
    if temporal:
        table = _arrow_csv(path, temporal)
    return _normalise(table)


def _arrow_csv(path: Path, column_types: dict[str, Any]) -> pyarrow.Table:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(
        column_types=column_types,
        null_values=[""],  # only an empty cell is missing: "NA" or "null" may be real values
        true_values=_TRUE,
        false_values=_FALSE,
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    parse = pacsv.ParseOptions(newlines_in_values=True)
    block = _BLOCK
    while True:
        try:
            return pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=block),
                parse_options=parse,
                convert_options=convert,
            )
        except pa.ArrowInvalid as exc:
            if "straddl" in str(exc) and block < 1 << 30:
                block *= 8  # a row longer than a block
                continue
            raise InvalidInput(f"cannot read the CSV: {exc}", field="file") from None


# --- Parquet -----------------------------------------------------------------------------------------


MAX_EXPANDED_BYTES = 2 * 1024**3  # a Parquet file's data once decompressed
MAX_CELLS = 200_000_000  # rows x columns: 1.6 GB as float64


def _read_parquet(path: Path, *, max_rows: int | None, max_columns: int | None) -> pyarrow.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    broken = (pa.ArrowException, OSError, ValueError)
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        rows = parquet.metadata.num_rows
    except broken as exc:
        raise InvalidInput(f"not a valid Parquet file: {exc}", field="file") from None
    # the limits and types come from the metadata: refuse before reading any data
    _check_names(list(schema.names), max_columns)
    for field in schema:
        if _parquet_kind(field.type) is None:
            raise InvalidInput(
                f"column {field.name!r} has the type {field.type}, which is not supported "
                "(supported: integers, floats, decimals, booleans, strings, dates and times)",
                field="file",
            )
    if not schema.names:
        raise InvalidInput("the Parquet file has no columns", field="file")
    if rows == 0:
        raise InvalidInput("the file has no data rows", field="file")
    if max_rows is not None and rows > max_rows:
        raise InvalidInput(f"the file has {rows} rows, more than the limit of {max_rows}", field="file")
    # compressed, a small file can hold gigabytes of repeated values: bound what reading it makes
    expanded = sum(parquet.metadata.row_group(i).total_byte_size for i in range(parquet.num_row_groups))
    cells = rows * len(schema.names)
    if expanded > MAX_EXPANDED_BYTES or cells > MAX_CELLS:
        raise InvalidInput(
            f"the Parquet file expands to {expanded} bytes in {cells} cells, more than the limits of "
            f"{MAX_EXPANDED_BYTES} bytes and {MAX_CELLS} cells",
            field="file",
        )
    try:
        table = parquet.read()
    except broken as exc:
        raise InvalidInput(f"not a valid Parquet file: {exc}", field="file") from None
    return _normalise(table)


def _parquet_kind(arrow_type: Any) -> str | None:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        return _parquet_kind(arrow_type.value_type)
    if pa.types.is_null(arrow_type) or _is_temporal(arrow_type) or _is_string_view(arrow_type):
        return "string"
    return column_type(arrow_type)


def _is_temporal(arrow_type: Any) -> bool:
    import pyarrow as pa

    t = pa.types
    return bool(t.is_timestamp(arrow_type) or t.is_date(arrow_type) or t.is_time(arrow_type))


def _is_string_view(arrow_type: Any) -> bool:
    import pyarrow as pa

    is_view = getattr(pa.types, "is_string_view", None)  # pyarrow 16 and later
    return bool(is_view is not None and is_view(arrow_type))


def _normalise(table: pyarrow.Table) -> pyarrow.Table:
    """One Arrow type per dataset type, whatever the file held: dictionaries decoded, dates, times and
    all-null columns as strings, decimals as float64, half floats as float32."""
    import pyarrow as pa

    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        arrow_type = field.type
        if pa.types.is_dictionary(arrow_type):
            arrow_type = arrow_type.value_type
            column = column.cast(arrow_type)
        if pa.types.is_null(arrow_type) or _is_temporal(arrow_type) or _is_string_view(arrow_type):
            column = column.cast(pa.string())
        elif pa.types.is_decimal(arrow_type):
            column = column.cast(pa.float64())
        elif pa.types.is_float16(arrow_type):
            column = column.cast(pa.float32())
        elif column_type(arrow_type) is None:
            raise InvalidInput(f"column {field.name!r} has the unsupported type {arrow_type}", field="file")
        columns.append(column)
    return pa.table(columns, names=table.column_names)


# --- content -----------------------------------------------------------------------------------------


def _check_formulas(table: pyarrow.Table) -> None:
    """Refuse a text cell a spreadsheet would run as a formula, unless the cell is just a number."""
    import pyarrow.compute as pc

    for name, column in zip(table.column_names, table.columns, strict=True):
        if column_type(column.type) != "string":
            continue
        suspect = pc.match_substring_regex(column, _FORMULA)
        if not pc.any(suspect).as_py():
            continue  # the common case: one vectorised pass, no per-cell Python
        suspect = pc.and_(suspect, pc.invert(pc.match_substring_regex(column, _NUMBER)))
        index = pc.index(suspect, True).as_py()
        if index < 0:
            continue
        cell = column[index].as_py()
        raise InvalidInput(
            f"row {index + 1}, column {name!r}: the text {cell[:TEXT_LIMIT]!r} starts with {cell[0]!r}, "
            "which a spreadsheet would run as a formula (CSV injection); prefix it with an apostrophe "
            "or remove the character",
            field="file",
        )
