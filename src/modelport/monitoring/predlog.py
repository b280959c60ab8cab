"""The sampled prediction log: what a model was asked and what it answered, kept per model in Parquet.

``observe`` runs on the event loop right after an answer is sent, so it only decides whether to keep
the event (the model's sample rate) and appends ``(time, event)`` to a buffer. A background thread
turns the buffer into rows (tensors as JSON text, BYTES decoded as UTF-8) and writes one immutable
segment per model per flush.

Layout: ``<directory>/<model>/seg-<tmin>-<tmax>-<rows>-<bytes>-<pid>-<token>-<n>.parquet``, times in
integer microseconds (rounded outwards), so readers prune by time, count rows and sizes from a listing
alone, and writers (several ``--workers`` processes, or several instances in one) never collide. A
segment is written under a dot-prefixed temporary name and renamed into place: readers never see half
a file. Columns: request_id, time (epoch seconds), version, surface, latency (seconds), inputs and
outputs (JSON objects: tensor name -> nested lists), one schema for every model.

Now and then the flush thread drops segments past the age and size bounds and merges the small
segments of finished ten-minute spans into bigger ones (under a per-model file lock, so one process at
a time). A merge writes the new segment before removing its sources: a reader may briefly see a row
twice (rows are told apart by (time, request_id), duplicates are dropped) or find a listed file gone
(it lists again).

pyarrow is imported inside the functions: the server must start without it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import secrets
import shutil
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import InvalidInput
from modelport.monitoring.rows import (
    ENCODE_SLICE,
    MODEL_NAME,
    Logged,
    Rows,
    arrow_table,
    check_name,
    columns,
    encode_tensors,
)
from modelport.monitoring.segments import (
    COLUMNS,
    EXPORT_FORMATS,
    Key,
    KeyCache,
    Listing,
    Segment,
    decode_cursor,
    encode_cursor,
    export_rows,
    find_rows,
    list_segments,
    schema,
    segment_name,
    select_rows,
)
from modelport.serving.observers import InferenceEvent

if TYPE_CHECKING:
    import pyarrow

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one process at a time is assumed
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "COLUMNS",
    "EXPORT_FORMATS",
    "Key",
    "PredictionLog",
    "Segment",
    "decode_cursor",
    "encode_cursor",
    "encode_tensors",
]

log = logging.getLogger("modelport.predlog")

_TEMP_PREFIX = ".tmp-"
_LOCK_NAME = ".lock"


class PredictionLog:
    """Sampled prediction log under ``directory`` (one subdirectory per model)."""

    row_group_rows = 4096
    merge_bytes = 8 << 20  # merged segments stop growing at about this size
    merge_span = 600.0  # seconds: only segments of the same finished span are merged together
    maintenance_seconds = 30.0  # retention and merging, by the flush thread
    temp_max_age = 3600.0  # temporary files older than this are left-overs of a crash
    key_cache_bytes = 64 << 20

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1 << 30,
        max_age_seconds: float = 7 * 86400,
        flush_rows: int = 5000,
        flush_seconds: float = 2.0,
        max_buffered_rows: int = 100_000,
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self.flush_rows = max(1, flush_rows)
        self.flush_seconds = max(0.001, flush_seconds)
        self.max_buffered_rows = max_buffered_rows
        self._rates: dict[str, float] = {}
        self._buffer: deque[tuple[float, Logged]] = deque()
        self._dropped_full: Counter[str] = Counter()  # written by observe only
        self._dropped_bad: Counter[str] = Counter()  # written under _flush_lock only
        self._purged: dict[str, float] = {}  # model -> deleted at: older buffered rows are not written
        self._flush_lock = threading.Lock()
        self._thread_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._token = secrets.token_hex(4)
        self._counter = 0
        self._counter_lock = threading.Lock()
        self._key_cache = KeyCache(self.key_cache_bytes)

    # --- sampling -------------------------------------------------------------------------------

    def set_rates(self, rates: Mapping[str, float]) -> None:
        """Sample rates by model name, 0 to 1; a model left out is not logged."""
        new: dict[str, float] = {}
        for model, rate in rates.items():
            check_name(model)
            value = float(rate)
            if not 0.0 <= value <= 1.0:
                raise InvalidInput(
                    f"sample rate of {model} must be between 0 and 1, not {rate}", field="rate"
                )
            if value > 0.0:
                new[model] = value
        self._rates = new  # one reference swap: observe never sees half an update

    def rate(self, model: str) -> float:
        return self._rates.get(model, 0.0)

    @property
    def dropped(self) -> int:
        """Rows this process sampled but did not write: buffer full, or events that could not be encoded."""
        return sum(self._dropped_full.values()) + sum(self._dropped_bad.values())

    def observe(self, event: InferenceEvent) -> None:
        rate = self._rates.get(event.model)
        if rate is None or event.status != 200 or event.version is None:
            return
        if rate < 1.0 and random.random() >= rate:
            return
        if len(self._buffer) >= self.max_buffered_rows:
            self._dropped_full[event.model] += 1
            return
        # plain tuples: the collector untracks them, so a full buffer adds no work to garbage collection
        self._buffer.append(
            (
                time.time(),
                Logged(
                    event.model,
                    event.version,
                    event.surface,
                    event.duration,
                    event.request_id,
                    event.inputs,
                    event.outputs,
                ),
            )
        )

    # --- the flush thread -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the flush thread (once). Imports pyarrow here, at startup: ImportError when it is missing,
        and no import under the GIL while serving."""
        import pyarrow.parquet  # noqa: F401

        with self._thread_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="modelport-predlog", daemon=True)
            self._thread.start()

    def close(self) -> None:
        with self._thread_lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join()
        self.flush()

    def _run(self) -> None:
        poll = min(0.25, self.flush_seconds / 4)
        oldest = time.monotonic()  # when the buffer last became non-empty (about)
        maintained = time.monotonic()
        while not self._stop.wait(poll):
            now = time.monotonic()
            if not self._buffer:
                oldest = now
            elif len(self._buffer) >= self.flush_rows or now - oldest >= self.flush_seconds:
                self._guarded(self.flush)
                oldest = time.monotonic()
            if now - maintained >= self.maintenance_seconds:
                self._guarded(self.enforce_retention)
                self._guarded(self.compact)
                maintained = time.monotonic()

    @staticmethod
    def _guarded(step: Any) -> None:
        try:
            step()
        except Exception:
            log.exception("prediction log: %s failed", step.__name__)

    def flush(self) -> None:
        """Write what is buffered now: one segment per model."""
        with self._flush_lock:
            buffer = self._buffer
            taken = [buffer.popleft() for _ in range(len(buffer))]
            if not taken:
                return
            for model, rows in self._encode(taken).items():
                try:
                    self._write_segment(model, arrow_table(rows))
                except Exception:
                    log.exception("prediction log: could not write %d rows of %s", len(rows.time), model)
                    self._dropped_bad[model] += len(rows.time)

    def _encode(self, taken: list[tuple[float, Logged]]) -> dict[str, Rows]:
        """Rows per model. Slices of ``ENCODE_SLICE`` events are encoded column by column (the common
        case: numeric tensors, a few microseconds per row); a slice with an event that cannot be
        encoded so is encoded row by row, which drops just that event."""
        groups: dict[str, Rows] = {}
        failed = 0
        for start in range(0, len(taken), ENCODE_SLICE):
            if start:
                time.sleep(0)  # let the event loop have the GIL between slices
            chunk = taken[start : start + ENCODE_SLICE]
            by_model: dict[str, list[tuple[float, Logged]]] = {}
            for at, event in chunk:
                purged = self._purged.get(event.model)
                if purged is None or at > purged:
                    by_model.setdefault(event.model, []).append((at, event))
            for model, items in by_model.items():
                try:
                    rows = columns(model, items)
                except Exception:
                    failed += self._encode_rows(items, groups)
                    continue
                groups.setdefault(model, Rows()).extend(rows)
        if failed > 1:
            log.warning("prediction log: dropped %d events it could not encode", failed)
        return groups

    def _encode_rows(self, items: list[tuple[float, Logged]], groups: dict[str, Rows]) -> int:
        """Row by row, dropping (and counting) the events that cannot be encoded; how many were dropped."""
        failed = 0
        for at, event in items:
            try:
                if event.version is None:
                    raise ValueError("no version")
                version = int(event.version)
                if not 0 <= version < 2**31:
                    raise ValueError(f"version {version} out of range")
                request_id = event.request_id if event.request_id else uuid.uuid4().hex
                inputs = encode_tensors(event.inputs)
                outputs = encode_tensors(event.outputs)
                rows = groups.get(event.model)
                if rows is None:
                    check_name(event.model)
                    rows = groups[event.model] = Rows()
                rows.request_id.append(str(request_id))
                rows.time.append(at)
                rows.version.append(version)
                rows.surface.append(str(event.surface))
                rows.latency.append(float(event.duration))
                rows.inputs.append(inputs)
                rows.outputs.append(outputs)
            except Exception:
                if not failed:
                    log.exception("prediction log: dropped an event of %r it could not encode", event.model)
                failed += 1
                self._dropped_bad[event.model] += 1
        return failed

    # --- segments -------------------------------------------------------------------------------

    def _model_dir(self, model: str) -> Path:
        check_name(model)
        return self.directory / model

    def _next_number(self) -> int:
        with self._counter_lock:
            self._counter += 1
            return self._counter

    def _write_segment(self, model: str, table: pyarrow.Table) -> Segment:
        import pyarrow.parquet as pq

        table = table.sort_by("time")
        times = table.column("time")
        tmin_us = math.floor(times[0].as_py() * 1e6) - 1
        tmax_us = math.ceil(times[-1].as_py() * 1e6) + 1
        folder = self._model_dir(model)
        folder.mkdir(parents=True, exist_ok=True)
        identity = f"{os.getpid()}-{self._token}-{self._next_number()}"
        temp = folder / f"{_TEMP_PREFIX}{identity}.parquet"
        try:
            pq.write_table(table, temp, compression="zstd", row_group_size=self.row_group_rows)
            size = temp.stat().st_size
            path = folder / segment_name(tmin_us, tmax_us, table.num_rows, size, identity)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        return Segment(path, tmin_us / 1e6, tmax_us / 1e6, table.num_rows, size)

    def segments(self, model: str) -> list[Segment]:
        """The model's segments, as listed now, in no particular order."""
        return list_segments(self._model_dir(model))

    def _models(self) -> list[str]:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries if e.is_dir() and MODEL_NAME.fullmatch(e.name))

    @contextlib.contextmanager
    def _maintenance_lock(self, model: str) -> Iterator[bool]:
        """Whether this caller may tidy ``model`` now (no other process or instance is at it)."""
        folder = self._model_dir(model)
        if fcntl is None:
            yield True
            return
        try:
            fd = os.open(folder / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # deleted meanwhile
            yield False
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def enforce_retention(self) -> None:
        """Drop whole segments past ``max_age_seconds``, then the oldest ones while a model's log is over
        ``max_bytes``; remove temporary files left by a crash."""
        now = time.time()
        for model in self._models():
            with self._maintenance_lock(model) as mine:
                if mine:
                    self._retain(model, now)

    def _retain(self, model: str, now: float) -> None:
        kept: list[Segment] = []
        for segment in self.segments(model):
            if segment.tmax < now - self.max_age_seconds:
                _unlink(segment.path)
            else:
                kept.append(segment)
        total = sum(s.bytes for s in kept)
        for segment in sorted(kept, key=lambda s: (s.tmax, s.tmin)):
            if total <= self.max_bytes:
                break
            _unlink(segment.path)
            total -= segment.bytes
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self._model_dir(model)):
                if entry.name.startswith(_TEMP_PREFIX):
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat().st_mtime < now - self.temp_max_age:
                            _unlink(Path(entry.path))

    def compact(self) -> None:
        """Merge the small segments of each finished ``merge_span`` into segments of up to about
        ``merge_bytes``, so that a week of two-second flushes stays a few thousand files."""
        now = time.time()
        for model in self._models():
            with self._maintenance_lock(model) as mine:
                if mine:
                    self._compact(model, now)

    def _compact(self, model: str, now: float) -> None:
        grace = max(60.0, 5 * self.flush_seconds)
        spans: dict[int, list[Segment]] = {}
        for segment in self.segments(model):
            span = math.floor((segment.tmin + 2e-6) / self.merge_span)  # undo the outward rounding
            if segment.bytes < self.merge_bytes // 2 and (span + 1) * self.merge_span + grace < now:
                spans.setdefault(span, []).append(segment)
        for candidates in spans.values():
            group: list[Segment] = []
            size = 0
            for segment in sorted(candidates, key=lambda s: s.tmin):
                if group and size + segment.bytes > self.merge_bytes:
                    self._merge(model, group)
                    group, size = [], 0
                group.append(segment)
                size += segment.bytes
            self._merge(model, group)

    def _merge(self, model: str, group: list[Segment]) -> None:
        if len(group) < 2:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for segment in group:
            try:
                tables.append(pq.read_table(segment.path, schema=schema()))
            except Exception:
                log.warning("prediction log: cannot read %s to merge it", segment.path, exc_info=True)
                return
        self._write_segment(model, pa.concat_tables(tables))
        for segment in group:
            _unlink(segment.path)

    def delete_model(self, model: str) -> None:
        """Remove the model's log, rows still buffered in this process included."""
        self._purged[model] = time.time()
        shutil.rmtree(self._model_dir(model), ignore_errors=True)

    def stats(self, model: str) -> dict[str, Any]:
        segments = self.segments(model)
        return {
            "rows": sum(s.rows for s in segments),
            "bytes": sum(s.bytes for s in segments),
            "segments": len(segments),
            "oldest": min((s.tmin for s in segments), default=None),
            "newest": max((s.tmax for s in segments), default=None),
            "dropped": self._dropped_full[model] + self._dropped_bad[model],
        }

    # --- reading --------------------------------------------------------------------------------

    def read(
        self,
        model: str,
        *,
        version: int | None = None,
        since: float | None = None,
        until: float | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of rows, newest first, with ``since <= time < until``; the cursor of the next page, or
        None when there is no more. The cursor names the last row returned: rows logged later never
        shift the pages that follow."""
        if limit < 1:
            raise InvalidInput("limit must be at least 1", field="limit")
        after = decode_cursor(cursor) if cursor else None
        listing, cache = self._listing(model), self._key_cache
        rows, last = select_rows(listing, cache, version, since, until, after, limit, newest_first=True)
        return rows, encode_cursor(last) if last else None

    def window(
        self,
        model: str,
        *,
        version: int | None,
        since: float,
        until: float | None = None,
        max_rows: int = 100_000,
    ) -> list[dict[str, Any]]:
        """The rows of ``since <= time < until`` (the newest ``max_rows`` of them), newest first."""
        listing, cache, limit = self._listing(model), self._key_cache, max(1, max_rows)
        rows, _ = select_rows(listing, cache, version, since, until, None, limit, newest_first=True)
        return rows

    def find(
        self, model: str, request_ids: Collection[str], *, since: float | None = None
    ) -> dict[str, dict[str, Any]]:
        """The logged row of each request id found (the newest when an id was logged twice). Segments
        are searched newest first until every id is found; ``since`` bounds the search."""
        return find_rows(self._listing(model), self._key_cache, request_ids, since)

    def export(
        self,
        model: str,
        fmt: str,
        *,
        version: int | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Iterator[bytes]:
        """The rows of the filter, oldest first, as chunks of a JSON lines, CSV or Parquet file. In every
        format inputs and outputs are JSON text (in JSON lines, JSON objects) and time is epoch seconds."""
        check_name(model)
        return export_rows(self._listing(model), self._key_cache, fmt, version, since, until)

    def _listing(self, model: str) -> Listing:
        return lambda: self.segments(model)  # looked up on each call: a listing is always fresh


# --- helpers ------------------------------------------------------------------------------------


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
