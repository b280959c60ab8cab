"""Reading the prediction log's segments back: listing, choosing rows in key order, cursors, exports.

:mod:`modelport.monitoring.predlog` writes the segments; this module knows their names, their schema
and how to read them. A segment's name carries its time range, row count and size
(``seg-<tmin>-<tmax>-<rows>-<bytes>-<pid>-<token>-<n>.parquet``, times in integer microseconds rounded
outwards), so a listing alone prunes by time and counts rows and bytes.

A read goes in two steps. The key columns (time, request_id, version) of the segments that may hold the
rows wanted are read, and cached (segments never change once visible); the rows are chosen from them in
key order, segments visited from the wanted end until no further one can hold a better row. Only then
are the payload columns read, and only from the row groups that hold the chosen rows.

Rows are told apart by their key (time, request_id): a row seen twice while a merge is under way is kept
once, and a cursor names the last row of a page, so rows logged later never shift the pages that follow.
A segment listed but gone when read (merged or expired meanwhile) makes the read list again; one that
cannot be read is skipped with a warning.

Exports stream pages of rows, oldest first, as JSON lines, CSV or Parquet.

pyarrow is imported inside the functions: the server must start without it.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import orjson

from modelport.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow

log = logging.getLogger("modelport.predlog")

COLUMNS = ("request_id", "time", "version", "surface", "latency", "inputs", "outputs")
EXPORT_FORMATS = ("jsonl", "csv", "parquet")
_KEY_COLUMNS = ["time", "request_id", "version"]
_PAYLOAD_COLUMNS = ["surface", "latency", "inputs", "outputs"]
_SEGMENT = re.compile(r"seg-(\d+)-(\d+)-(\d+)-(\d+)-(\d+)-([0-9a-f]+)-(\d+)\.parquet")
_FORMULA = re.compile(r"[=+\-@\t\r]")  # OWASP CSV injection: a spreadsheet runs such a cell
_RETRIES = 4  # listings retried when a listed segment vanished (merged or expired meanwhile)

Key = tuple[float, str]  # (time, request_id): a row's place in the log
Row = dict[str, Any]
_T = TypeVar("_T")


@dataclass(frozen=True)
class Segment:
    path: Path
    tmin: float  # epoch seconds, rounded down to the microsecond (and one more)
    tmax: float  # rounded up
    rows: int
    bytes: int


Listing = Callable[[], list[Segment]]  # a model's segments, as listed now
Chosen = tuple[Key, Segment, int]  # a row: its key, its segment and its index there


def segment_name(tmin_us: int, tmax_us: int, rows: int, size: int, identity: str) -> str:
    """The file name of a segment (``identity``: ``<pid>-<token>-<n>``, unique among writers)."""
    return f"seg-{tmin_us:016d}-{tmax_us:016d}-{rows}-{size}-{identity}.parquet"


def list_segments(folder: Path) -> list[Segment]:
    """The segments in ``folder``, as listed now, in no particular order."""
    found: list[Segment] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return found
    for entry in entries:
        match = _SEGMENT.fullmatch(entry.name)
        if match:
            tmin, tmax, rows, size = (int(match.group(i)) for i in range(1, 5))
            found.append(Segment(Path(entry.path), tmin / 1e6, tmax / 1e6, rows, size))
    return found


def schema() -> pyarrow.Schema:
    """The one schema of every segment (and of Parquet exports)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("request_id", pa.string()),
            ("time", pa.float64()),
            ("version", pa.int32()),
            ("surface", pa.string()),
            ("latency", pa.float64()),
            ("inputs", pa.string()),
            ("outputs", pa.string()),
        ]
    )


# --- the key cache --------------------------------------------------------------------------------


@dataclass
class _Keys:
    """The key columns of one segment, cached: segments never change once visible."""

    time: np.ndarray  # float64
    request_id: Any  # pyarrow StringArray
    version: np.ndarray  # int32
    starts: np.ndarray  # first row of each row group, then the row count
    nbytes: int


class KeyCache:
    """The key columns of the segments read lately, the least recently used dropped past ``max_bytes``
    (the last one read is always kept). Safe to share between threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._keys: OrderedDict[Path, _Keys] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, segment: Segment) -> _Keys | None:
        """The segment's keys; None when it cannot be read (logged), FileNotFoundError when it is gone."""
        with self._lock:
            hit = self._keys.get(segment.path)
            if hit is not None:
                self._keys.move_to_end(segment.path)
                return hit
        import pyarrow.parquet as pq

        try:
            with pq.ParquetFile(segment.path) as pf:
                table = pf.read(columns=_KEY_COLUMNS)
                counts = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
        except FileNotFoundError:
            raise
        except Exception:
            _unreadable(segment)
            return None
        request_id = table.column("request_id").combine_chunks()
        keys = _Keys(
            time=table.column("time").to_numpy(),
            request_id=request_id,
            version=table.column("version").to_numpy(),
            starts=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]),
            nbytes=table.num_rows * 12 + request_id.nbytes,
        )
        with self._lock:
            if segment.path not in self._keys:
                self._keys[segment.path] = keys
                self._bytes += keys.nbytes
                while self._bytes > self.max_bytes and len(self._keys) > 1:
                    _, old = self._keys.popitem(last=False)
                    self._bytes -= old.nbytes
        return keys


def _unreadable(segment: Segment) -> None:
    """Called while handling a failed read: FileNotFoundError when the segment is gone, else a warning."""
    if not segment.path.exists():
        raise FileNotFoundError(segment.path) from None
    log.warning("prediction log: skipping unreadable segment %s", segment.path, exc_info=True)


def _retrying(attempt: Callable[[], _T], doing: str) -> _T:
    for _ in range(_RETRIES):
        try:
            return attempt()
        except FileNotFoundError:  # merged or expired since the listing: list again
            continue
    raise RuntimeError(f"prediction log: segments kept vanishing while {doing}")


# --- reading --------------------------------------------------------------------------------------


def select_rows(
    listing: Listing,
    cache: KeyCache,
    version: int | None,
    since: float | None,
    until: float | None,
    after: Key | None,
    limit: int,
    *,
    newest_first: bool,
    raw: bool = False,
) -> tuple[list[Row], Key | None]:
    """Up to ``limit`` rows with ``since <= time < until`` in key order from ``after`` (exclusive), and
    the key to go on from when more follow. ``raw``: inputs and outputs as JSON text, not decoded."""

    def attempt() -> tuple[list[Row], Key | None]:
        chosen = _choose(listing(), cache, version, since, until, after, limit + 1, newest_first)
        rows = _payload(cache, chosen[:limit], raw=raw)
        rows.sort(key=lambda r: (r["time"], r["request_id"]), reverse=newest_first)
        return rows, chosen[limit - 1][0] if len(chosen) > limit else None

    return _retrying(attempt, "reading")


def find_rows(
    listing: Listing, cache: KeyCache, request_ids: Collection[str], since: float | None
) -> dict[str, Row]:
    """The row of each request id found (the newest when an id was logged twice), segments searched
    newest first until every id is found."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = {str(r) for r in request_ids}
    if not wanted:
        return {}
    value_set = pa.array(sorted(wanted), pa.string())

    def attempt() -> dict[str, Row]:
        found: dict[str, Chosen] = {}
        segments = [s for s in listing() if since is None or s.tmax >= since]
        for segment in sorted(segments, key=lambda s: s.tmax, reverse=True):
            if len(found) == len(wanted) and all(k[0] > segment.tmax for k, _, _ in found.values()):
                break
            keys = cache.get(segment)
            if keys is None:
                continue
            hits = np.flatnonzero(pc.is_in(keys.request_id, value_set=value_set).to_numpy(False))
            if hits.size == 0:
                continue
            for i, rid in zip(hits.tolist(), keys.request_id.take(hits).to_pylist(), strict=True):
                t = float(keys.time[i])
                if since is not None and t < since:
                    continue
                if rid not in found or (t, rid) > found[rid][0]:
                    found[rid] = ((t, rid), segment, i)
        rows = _payload(cache, list(found.values()), raw=False)
        return {row["request_id"]: row for row in rows}

    return _retrying(attempt, "searching")


def export_rows(
    listing: Listing,
    cache: KeyCache,
    fmt: str,
    version: int | None,
    since: float | None,
    until: float | None,
) -> Iterator[bytes]:
    """The rows of the filter, oldest first, as chunks of a file in ``fmt`` (one of ``EXPORT_FORMATS``,
    checked now; the rows are read as the chunks are taken)."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(
            f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}", field="format"
        )
    pages = _pages(listing, cache, version, since, until)
    if fmt == "jsonl":
        return _jsonl(pages)
    if fmt == "csv":
        return _csv(pages)
    return _parquet(pages)


def _pages(
    listing: Listing,
    cache: KeyCache,
    version: int | None,
    since: float | None,
    until: float | None,
    size: int = 2000,
) -> Iterator[list[Row]]:
    after: Key | None = None
    while True:
        rows, after = select_rows(
            listing, cache, version, since, until, after, size, newest_first=False, raw=True
        )
        if rows:
            yield rows
        if after is None:
            return


def _choose(
    segments: list[Segment],
    cache: KeyCache,
    version: int | None,
    since: float | None,
    until: float | None,
    after: Key | None,
    need: int,
    newest_first: bool,
) -> list[Chosen]:
    """The first ``need`` rows in key order (duplicates dropped), visiting only the segments that may
    hold one of them."""
    low, high = since, until
    segments = [
        s
        for s in segments
        if (low is None or s.tmax >= low)
        and (high is None or s.tmin < high)
        and (after is None or (s.tmin <= after[0] if newest_first else s.tmax >= after[0]))
    ]
    if newest_first:
        segments.sort(key=lambda s: s.tmax, reverse=True)
    else:
        segments.sort(key=lambda s: s.tmin)
    best: dict[Key, tuple[Segment, int]] = {}
    edge: float | None = None  # time of the need-th row so far
    for segment in segments:
        if edge is not None and (segment.tmax < edge if newest_first else segment.tmin > edge):
            break
        keys = cache.get(segment)
        if keys is None:
            continue
        for key, i in _candidates(keys, version, since, until, after, need, newest_first):
            best.setdefault(key, (segment, i))
        if len(best) >= need:
            order = sorted(best, reverse=newest_first)[:need]
            best = {k: best[k] for k in order}
            edge = order[-1][0]
    order = sorted(best, reverse=newest_first)
    return [(k, *best[k]) for k in order]


def _candidates(
    keys: _Keys,
    version: int | None,
    since: float | None,
    until: float | None,
    after: Key | None,
    need: int,
    newest_first: bool,
) -> Iterable[tuple[Key, int]]:
    """The first ``need`` rows of one segment in key order that pass the filters (ties on the edge
    time all included)."""
    times = keys.time
    mask = np.ones(times.shape[0], dtype=bool)
    if version is not None:
        mask &= keys.version == version
    if since is not None:
        mask &= times >= since
    if until is not None:
        mask &= times < until
    if after is not None:
        at, rid = after
        beyond = (times < at) if newest_first else (times > at)
        same = np.flatnonzero(times == at)
        if same.size:
            ids = keys.request_id.take(same).to_pylist()
            later = [
                i for i, r in zip(same.tolist(), ids, strict=True) if (r < rid if newest_first else r > rid)
            ]
            beyond[later] = True
        mask &= beyond
    index = np.flatnonzero(mask)
    if index.size > need:
        selected = times[index]
        edge = (
            np.partition(selected, selected.size - need)[selected.size - need]
            if newest_first
            else np.partition(selected, need - 1)[need - 1]
        )
        index = index[selected >= edge] if newest_first else index[selected <= edge]
    ids = keys.request_id.take(index).to_pylist()
    return [((float(t), r), i) for t, r, i in zip(times[index].tolist(), ids, index.tolist(), strict=True)]


def _payload(cache: KeyCache, chosen: list[Chosen], *, raw: bool) -> list[Row]:
    """Whole rows for the chosen (key, segment, row) triples, reading only the row groups needed."""
    import pyarrow.parquet as pq

    by_segment: dict[Path, tuple[Segment, list[tuple[Key, int]]]] = {}
    for key, segment, i in chosen:
        by_segment.setdefault(segment.path, (segment, []))[1].append((key, i))
    rows: list[Row] = []
    for segment, wanted in by_segment.values():
        keys = cache.get(segment)
        if keys is None:
            continue
        index = np.array([i for _, i in wanted], dtype=np.int64)
        group = np.searchsorted(keys.starts, index, side="right") - 1  # the row group of each row
        groups = np.unique(group)
        sizes = keys.starts[groups + 1] - keys.starts[groups]
        base = np.concatenate([[0], np.cumsum(sizes)])  # where each group lands in what is read
        position = base[np.searchsorted(groups, group)] + index - keys.starts[group]
        try:
            with pq.ParquetFile(segment.path) as pf:
                table = pf.read_row_groups(groups.tolist(), columns=_PAYLOAD_COLUMNS)
        except FileNotFoundError:
            raise
        except Exception:
            _unreadable(segment)
            continue
        table = table.take(position)
        surface = table.column("surface").to_pylist()
        latency = table.column("latency").to_pylist()
        inputs = table.column("inputs").to_pylist()
        outputs = table.column("outputs").to_pylist()
        versions = keys.version[index].tolist()
        for n, ((t, rid), _) in enumerate(wanted):
            rows.append(
                {
                    "request_id": rid,
                    "time": t,
                    "version": versions[n],
                    "surface": surface[n],
                    "latency": latency[n],
                    "inputs": inputs[n] if raw else orjson.loads(inputs[n]),
                    "outputs": outputs[n] if raw else orjson.loads(outputs[n]),
                }
            )
    return rows


# --- cursors --------------------------------------------------------------------------------------


def encode_cursor(key: Key) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([key[0], key[1]])).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> Key:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, rid = orjson.loads(raw)
        if isinstance(at, bool) or not isinstance(at, int | float) or not isinstance(rid, str):
            raise ValueError(cursor)
        return float(at), rid
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidInput("invalid cursor", field="cursor") from None


# --- export encoders (rows read raw: inputs and outputs as JSON text) ------------------------------


def _jsonl(pages: Iterator[list[Row]]) -> Iterator[bytes]:
    for rows in pages:
        yield b"".join(
            orjson.dumps(
                {**row, "inputs": orjson.Fragment(row["inputs"]), "outputs": orjson.Fragment(row["outputs"])}
            )
            + b"\n"
            for row in rows
        )


def _csv(pages: Iterator[list[Row]]) -> Iterator[bytes]:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    yield text.getvalue().encode("utf-8")
    for rows in pages:
        text.seek(0)
        text.truncate()
        for row in rows:
            rid = row["request_id"]
            writer.writerow(
                [
                    "'" + rid if _FORMULA.match(rid) else rid,
                    repr(row["time"]),
                    row["version"],
                    row["surface"],
                    repr(row["latency"]),
                    row["inputs"],
                    row["outputs"],
                ]
            )
        yield text.getvalue().encode("utf-8")


class _Sink:
    """A file-like object that collects what the Parquet writer writes, to hand it on in chunks."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def _parquet(pages: Iterator[list[Row]]) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = _Sink()
    table_schema = schema()
    with pq.ParquetWriter(sink, table_schema, compression="zstd") as writer:
        for rows in pages:
            writer.write_table(pa.Table.from_pylist(rows, schema=table_schema))
            data = sink.take()
            if data:
                yield data
    data = sink.take()
    if data:
        yield data
