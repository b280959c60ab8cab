"""The sampled prediction log: sampling, flushing, segments, reading, export, retention, merging."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from modelport.errors import InvalidInput, InvalidName  # noqa: E402
from modelport.monitoring.predlog import COLUMNS, PredictionLog, encode_tensors  # noqa: E402
from modelport.serving.observers import InferenceEvent  # noqa: E402

NOW = time.time()


def event(
    model: str = "m",
    version: int | None = 1,
    rid: str | None = None,
    x: Any = None,
    status: int = 200,
    **extra: Any,
) -> InferenceEvent:
    return InferenceEvent(
        model=model,
        version=version,
        surface="v2",
        status=status,
        duration=0.0025,
        inputs={"x": np.array([[1.0, 2.0]]) if x is None else x},
        outputs={"y": np.array([1], dtype=np.int64)},
        request_id=rid,
        **extra,
    )


def put(plog: PredictionLog, at: float, ev: InferenceEvent) -> None:
    """What ``observe`` buffers, at a chosen time."""
    plog._buffer.append((at, ev))


def fill(plog: PredictionLog, times: list[float], *, version: int = 1, prefix: str = "r") -> list[str]:
    ids = []
    for n, at in enumerate(times):
        rid = f"{prefix}{n:05d}"
        put(plog, at, event(version=version, rid=rid, x=np.array([[float(n)]])))
        ids.append(rid)
    plog.flush()
    return ids


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def plog(tmp_path: Path) -> PredictionLog:
    log = PredictionLog(tmp_path / "predictions")
    log.set_rates({"m": 1.0})
    return log


# --- sampling ---------------------------------------------------------------------------------------


def test_models_without_a_rate_are_not_logged(plog: PredictionLog) -> None:
    plog.observe(event(model="other"))
    plog.set_rates({"m": 0.0})
    assert plog.rate("m") == 0.0
    plog.observe(event())
    assert not plog._buffer


def test_rate_one_logs_every_successful_answer_only(plog: PredictionLog) -> None:
    for _ in range(100):
        plog.observe(event())
    plog.observe(event(status=500, error="internal"))
    plog.observe(event(status=429))
    plog.observe(event(version=None))
    assert len(plog._buffer) == 100


def test_partial_rate_samples_about_that_share(plog: PredictionLog) -> None:
    random.seed(12)
    plog.set_rates({"m": 0.3})
    n = 20_000
    for _ in range(n):
        plog.observe(event())
    assert abs(len(plog._buffer) / n - 0.3) < 0.02  # ~7 standard deviations


def test_rates_are_checked(plog: PredictionLog) -> None:
    with pytest.raises(InvalidInput):
        plog.set_rates({"m": 1.5})
    with pytest.raises(InvalidName):
        plog.set_rates({"../x": 1.0})
    assert plog.rate("m") == 1.0  # a refused update changes nothing


# --- flushing --------------------------------------------------------------------------------------


def test_flush_by_rows(tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path, flush_rows=10, flush_seconds=60)
    plog.set_rates({"m": 1.0})
    plog.start()
    plog.start()  # idempotent
    try:
        for _ in range(9):
            plog.observe(event())
        time.sleep(0.5)
        assert plog.stats("m")["rows"] == 0
        plog.observe(event())
        wait_for(lambda: plog.stats("m")["rows"] == 10)
    finally:
        plog.close()


def test_flush_by_time(tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path, flush_rows=1000, flush_seconds=0.2)
    plog.set_rates({"m": 1.0})
    plog.start()
    try:
        for _ in range(3):
            plog.observe(event())
        wait_for(lambda: plog.stats("m")["rows"] == 3, timeout=5)
    finally:
        plog.close()


def test_close_flushes_and_stops_the_thread(plog: PredictionLog) -> None:
    plog.start()
    thread = plog._thread
    for _ in range(7):
        plog.observe(event())
    plog.close()
    assert thread is not None and not thread.is_alive()
    assert plog.stats("m")["rows"] == 7
    rows, _ = plog.read("m")
    assert len(rows) == 7


def test_a_full_buffer_drops_new_rows_and_counts_them(tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path, max_buffered_rows=5)
    plog.set_rates({"m": 1.0})
    for _ in range(8):
        plog.observe(event())
    assert len(plog._buffer) == 5
    assert plog.dropped == 3
    plog.flush()
    stats = plog.stats("m")
    assert stats["rows"] == 5 and stats["dropped"] == 3


def test_a_bad_event_is_dropped_not_fatal(plog: PredictionLog, caplog: pytest.LogCaptureFixture) -> None:
    put(plog, NOW, event(rid="good"))
    put(plog, NOW, event(version=2**40, rid="huge-version"))
    put(plog, NOW, InferenceEvent("m", 1, "v2", 200, 0.1, inputs=None, request_id="no-inputs"))  # type: ignore[arg-type]
    plog.flush()
    assert [r["request_id"] for r in plog.read("m")[0]] == ["good"]
    assert plog.stats("m")["dropped"] == 2
    assert "could not encode" in caplog.text


def test_the_flush_thread_survives_a_failing_write(tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path / "p", flush_seconds=0.05)
    plog.set_rates({"m": 1.0})
    (tmp_path / "p").write_text("a file where the directory should be")
    plog.start()
    try:
        plog.observe(event())
        wait_for(lambda: plog.dropped == 1, timeout=5)
        (tmp_path / "p").unlink()
        plog.observe(event())
        wait_for(lambda: plog.stats("m")["rows"] == 1, timeout=5)
    finally:
        plog.close()


# --- what is stored --------------------------------------------------------------------------------


def test_only_the_listed_fields_reach_the_files(plog: PredictionLog) -> None:
    put(
        plog,
        NOW,
        event(rid="abc", error="sk-secret-error", prompt_tokens=7, first_token=0.5),
    )
    plog.flush()
    (segment,) = plog.segments("m")
    table = pq.read_table(segment.path)
    assert tuple(table.column_names) == COLUMNS
    (row,) = table.to_pylist()
    assert row == {
        "request_id": "abc",
        "time": NOW,
        "version": 1,
        "surface": "v2",
        "latency": 0.0025,
        "inputs": '{"x":[[1.0,2.0]]}',
        "outputs": '{"y":[1]}',
    }
    names = os.listdir(segment.path.parent)
    assert all(n.startswith("seg-") or n == ".lock" for n in names), names


def test_bytes_and_odd_tensors_are_stored_as_json(plog: PredictionLog) -> None:
    texts = np.array([[b"caf\xc3\xa9", b"bad\xff"], ["str", b""]], dtype=object)
    put(
        plog,
        NOW,
        InferenceEvent(
            "m",
            3,
            "v2",
            200,
            0.1,
            inputs={
                "text": texts,
                "fixed": np.array([b"ab", b"c"], dtype="S2"),
                "unicode": np.array(["x", "yz"]),
                "strided": np.arange(6.0).reshape(2, 3)[:, ::2],
                "half": np.array([0.5, np.nan, np.inf], dtype=np.float16),
                "flag": np.array([True, False]),
                "scalar": np.array(4, dtype=np.int8),
                "big": np.array([1, 2], dtype=">i4"),
            },
            outputs={"p": np.array([[0.25, 0.75]], dtype=np.float32)},
            request_id="b",
        ),
    )
    plog.flush()
    (row,) = plog.read("m")[0]
    assert row["inputs"] == {
        "text": [["café", "bad\ufffd"], ["str", ""]],
        "fixed": ["ab", "c"],
        "unicode": ["x", "yz"],
        "strided": [[0.0, 2.0], [3.0, 5.0]],
        "half": [0.5, None, None],
        "flag": [True, False],
        "scalar": 4,
        "big": [1, 2],
    }
    assert row["outputs"] == {"p": [[0.25, 0.75]]}
    assert row["version"] == 3


def test_encode_tensors_falls_back_for_what_orjson_cannot_take() -> None:
    assert json.loads(encode_tensors({"c": np.array([1 + 2j])})) == {"c": ["(1+2j)"]}


def test_segment_names_carry_time_rows_and_size(plog: PredictionLog) -> None:
    fill(plog, [NOW - 10, NOW - 5, NOW])
    (segment,) = plog.segments("m")
    assert segment.tmin <= NOW - 10 < segment.tmin + 1e-5
    assert segment.tmax - 1e-5 < NOW <= segment.tmax
    assert segment.rows == 3
    assert segment.bytes == segment.path.stat().st_size
    assert str(os.getpid()) in segment.path.name


# --- reading --------------------------------------------------------------------------------------


def test_read_pages_newest_first(plog: PredictionLog) -> None:
    times = [NOW - 100 + n for n in range(25)]
    ids = fill(plog, times[:10]) + fill(plog, times[10:], prefix="s")  # two segments
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        rows, cursor = plog.read("m", cursor=cursor, limit=7)
        pages += 1
        seen += [r["request_id"] for r in rows]
        assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)
        if cursor is None:
            break
    assert pages == 4
    assert seen == list(reversed(ids))
    first = plog.read("m", limit=1)[0][0]
    assert first == {
        "request_id": "s00014",
        "time": times[-1],
        "version": 1,
        "surface": "v2",
        "latency": 0.0025,
        "inputs": {"x": [[14.0]]},
        "outputs": {"y": [1]},
    }


def test_read_filters_by_version_and_time(plog: PredictionLog) -> None:
    fill(plog, [NOW - 30, NOW - 20, NOW - 10], version=1, prefix="a")
    fill(plog, [NOW - 25, NOW - 15, NOW - 5], version=2, prefix="b")
    assert [r["request_id"] for r in plog.read("m", version=2)[0]] == ["b00002", "b00001", "b00000"]
    rows, _ = plog.read("m", since=NOW - 20, until=NOW - 5)  # since included, until left out
    assert [r["time"] for r in rows] == [NOW - 10, NOW - 15, NOW - 20]
    rows, cursor = plog.read("m", version=1, since=NOW - 25, limit=1)
    assert [r["request_id"] for r in rows] == ["a00002"]
    rows, cursor = plog.read("m", version=1, since=NOW - 25, cursor=cursor, limit=1)
    assert [r["request_id"] for r in rows] == ["a00001"] and cursor is None
    assert plog.read("m", since=NOW + 1) == ([], None)
    assert plog.read("unknown") == ([], None)


def test_the_cursor_is_stable_when_rows_arrive(plog: PredictionLog) -> None:
    fill(plog, [NOW - 50 + n for n in range(10)], prefix="old")
    rows, cursor = plog.read("m", limit=4)
    assert [r["request_id"] for r in rows] == ["old00009", "old00008", "old00007", "old00006"]
    fill(plog, [NOW - 50 + n + 0.5 for n in range(10)], prefix="new")  # interleaved and newer rows
    rows, cursor = plog.read("m", limit=4, cursor=cursor)
    assert [r["request_id"] for r in rows] == ["new00005", "old00005", "new00004", "old00004"]


def test_rows_of_the_same_time_page_by_request_id(plog: PredictionLog) -> None:
    ids = [f"t{n}" for n in range(9)]
    for rid in ids:
        put(plog, NOW, event(rid=rid))
    plog.flush()
    for rid in ids[:4]:
        put(plog, NOW, event(rid=rid + "x"))  # another segment, same time
    plog.flush()
    seen: list[str] = []
    cursor = None
    while True:
        rows, cursor = plog.read("m", cursor=cursor, limit=2)
        seen += [r["request_id"] for r in rows]
        if cursor is None:
            break
    assert seen == sorted(ids + [r + "x" for r in ids[:4]], reverse=True)


def test_a_bad_cursor_is_refused(plog: PredictionLog) -> None:
    for cursor in ["nope", "W10", "WyJ4IiwxXQ"]:  # not base64 JSON, [], ["x", 1]
        with pytest.raises(InvalidInput):
            plog.read("m", cursor=cursor)
    with pytest.raises(InvalidInput):
        plog.read("m", limit=0)
    with pytest.raises(InvalidName):
        plog.read("../etc")


def test_find_by_request_id(plog: PredictionLog) -> None:
    fill(plog, [NOW - 30, NOW - 20], prefix="a")
    put(plog, NOW - 10, event(rid="a00000", version=2))  # the same id again, later
    plog.flush()
    found = plog.find("m", ["a00000", "a00001", "missing"])
    assert set(found) == {"a00000", "a00001"}
    assert found["a00000"]["version"] == 2 and found["a00000"]["time"] == NOW - 10
    assert found["a00001"]["inputs"] == {"x": [[1.0]]}
    assert plog.find("m", []) == {}
    assert set(plog.find("m", ["a00000", "a00001"], since=NOW - 15)) == {"a00000"}


def test_window(plog: PredictionLog) -> None:
    fill(plog, [NOW - 40 + n for n in range(20)], version=1, prefix="a")
    fill(plog, [NOW - 40 + n + 0.5 for n in range(20)], version=2, prefix="b")
    rows = plog.window("m", version=1, since=NOW - 30, until=NOW - 25)
    assert sorted(r["request_id"] for r in rows) == [f"a{n:05d}" for n in range(10, 15)]
    rows = plog.window("m", version=None, since=NOW - 40, max_rows=3)
    assert {r["request_id"] for r in rows} == {"b00019", "a00019", "b00018"}
    assert plog.window("m", version=3, since=0) == []


def test_duplicates_seen_during_a_merge_are_dropped(plog: PredictionLog) -> None:
    fill(plog, [NOW - 3, NOW - 2, NOW - 1])
    (segment,) = plog.segments("m")
    twin = segment.path.with_name(segment.path.name.replace(f"-{os.getpid()}-", "-1-"))
    shutil.copy(segment.path, twin)  # a merged segment whose sources are not yet removed
    assert len(plog.segments("m")) == 2
    rows, cursor = plog.read("m", limit=3)
    assert [r["request_id"] for r in rows] == ["r00002", "r00001", "r00000"] and cursor is None
    assert len(plog.window("m", version=None, since=0)) == 3
    assert sum(1 for _ in _jsonl_rows(plog)) == 3


def test_readers_skip_temporary_and_broken_files(
    plog: PredictionLog, caplog: pytest.LogCaptureFixture
) -> None:
    fill(plog, [NOW - 1])
    folder = plog.directory / "m"
    (folder / ".tmp-999-abcd-1.parquet").write_bytes(b"PAR1 half written")
    (folder / "seg-0000000000000001-9999999999999999-5-10-999-abcd-2.parquet").write_bytes(b"not parquet")
    rows, _ = plog.read("m")
    assert [r["request_id"] for r in rows] == ["r00000"]
    assert "unreadable segment" in caplog.text


def test_two_writers_in_one_directory(tmp_path: Path) -> None:
    one, two = PredictionLog(tmp_path), PredictionLog(tmp_path)  # as two worker processes would
    for plog, prefix in ((one, "a"), (two, "b")):
        plog.set_rates({"m": 1.0})
        for n in range(5):
            put(plog, NOW - 10 + n, event(rid=f"{prefix}{n}"))
        plog.flush()
        for n in range(5):
            put(plog, NOW - 5 + n, event(rid=f"{prefix}{n + 5}"))
        plog.flush()
    reader = PredictionLog(tmp_path)
    assert reader.stats("m")["rows"] == 20 and reader.stats("m")["segments"] == 4
    rows, _ = reader.read("m", limit=100)
    assert sorted(r["request_id"] for r in rows) == sorted(
        [f"a{n}" for n in range(10)] + [f"b{n}" for n in range(10)]
    )


# --- export ---------------------------------------------------------------------------------------


def _jsonl_rows(plog: PredictionLog, **filters: Any) -> list[dict[str, Any]]:
    data = b"".join(plog.export("m", "jsonl", **filters))
    return [json.loads(line) for line in data.decode().splitlines()]


def test_export_jsonl(plog: PredictionLog) -> None:
    fill(plog, [NOW - 5000 + n for n in range(2500)], version=1)  # more than one page
    fill(plog, [NOW - 1], version=2, prefix="v")
    rows = _jsonl_rows(plog)
    assert len(rows) == 2501
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)  # oldest first
    assert rows[0] == {
        "request_id": "r00000",
        "time": NOW - 5000,
        "version": 1,
        "surface": "v2",
        "latency": 0.0025,
        "inputs": {"x": [[0.0]]},
        "outputs": {"y": [1]},
    }
    assert [r["request_id"] for r in _jsonl_rows(plog, version=2)] == ["v00000"]
    assert len(_jsonl_rows(plog, since=NOW - 10, until=NOW)) == 1


def test_export_csv(plog: PredictionLog) -> None:
    fill(plog, [NOW - 3, NOW - 2])
    put(plog, NOW - 1, event(rid="=HYPERLINK(1)", x=np.array([["a,b", 'q"']], dtype=object)))
    plog.flush()
    text = b"".join(plog.export("m", "csv")).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == COLUMNS
    assert [r["request_id"] for r in rows] == ["r00000", "r00001", "'=HYPERLINK(1)"]
    assert float(rows[0]["time"]) == NOW - 3 and rows[0]["version"] == "1"
    assert json.loads(rows[2]["inputs"]) == {"x": [["a,b", 'q"']]}
    assert json.loads(rows[1]["outputs"]) == {"y": [1]}
    assert b"".join(plog.export("m", "csv", since=NOW + 1)).decode().splitlines() == [",".join(COLUMNS)]


def test_export_parquet(plog: PredictionLog) -> None:
    fill(plog, [NOW - 3, NOW - 2, NOW - 1])
    chunks = list(plog.export("m", "parquet", until=NOW - 1.5))
    table = pq.read_table(io.BytesIO(b"".join(chunks)))
    assert tuple(table.column_names) == COLUMNS
    assert table.column("request_id").to_pylist() == ["r00000", "r00001"]
    assert json.loads(table.column("inputs")[1].as_py()) == {"x": [[1.0]]}
    empty = pq.read_table(io.BytesIO(b"".join(plog.export("m", "parquet", version=9))))
    assert empty.num_rows == 0


def test_export_refuses_unknown_formats_at_once(plog: PredictionLog) -> None:
    with pytest.raises(InvalidInput):
        plog.export("m", "xlsx")


# --- retention, merging, deletion -----------------------------------------------------------------


def test_retention_by_age(tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path, max_age_seconds=3600)
    plog.set_rates({"m": 1.0})
    fill(plog, [NOW - 7200, NOW - 7100], prefix="old")
    fill(plog, [NOW - 7200, NOW - 60], prefix="mixed")  # kept: a segment goes whole
    fill(plog, [NOW - 10], prefix="new")
    stale = tmp_path / "m" / ".tmp-1-ab-1.parquet"
    stale.write_bytes(b"left by a crash")
    os.utime(stale, (NOW - 7200, NOW - 7200))
    fresh = tmp_path / "m" / ".tmp-1-ab-2.parquet"
    fresh.write_bytes(b"being written")
    plog.enforce_retention()
    assert sorted(r["request_id"] for r in plog.window("m", version=None, since=0)) == [
        "mixed00000",
        "mixed00001",
        "new00000",
    ]
    assert not stale.exists() and fresh.exists()


def test_retention_by_size_drops_the_oldest_first(tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path)
    plog.set_rates({"m": 1.0, "n": 1.0})
    for n in range(5):
        fill(plog, [NOW - 100 + n], prefix=f"s{n}-")
    put(plog, NOW, event(model="n"))
    plog.flush()
    sizes = sorted(s.bytes for s in plog.segments("m"))
    plog.max_bytes = sizes[0] + sizes[1] + sizes[2]
    plog.enforce_retention()
    kept = sorted(r["request_id"] for r in plog.window("m", version=None, since=0))
    assert kept == ["s2-00000", "s3-00000", "s4-00000"]
    assert plog.stats("m")["bytes"] <= plog.max_bytes
    assert plog.stats("n")["rows"] == 1  # bounds are per model


def test_small_segments_of_finished_spans_are_merged(tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path)
    plog.set_rates({"m": 1.0})
    span = plog.merge_span
    now = time.time()  # not the module's NOW: a long suite can outlive a span
    if now % span > span - 30:  # the current span ends within the test: wait for the next one
        time.sleep(span - now % span + 1)
        now = time.time()
    start = (int(now / span) - 3) * span  # a span long finished
    for n in range(6):
        fill(plog, [start + n * 10 + k for k in range(3)], prefix=f"p{n}-")
    current = int(now / span) * span
    fill(plog, [max(current, now - 1), now], prefix="recent")
    fill(plog, [now], prefix="recent2")
    before = plog.read("m", limit=100)[0]
    assert plog.stats("m")["segments"] == 8
    plog.compact()
    assert plog.stats("m")["segments"] == 3  # six merged into one; the current span left alone
    assert plog.stats("m")["rows"] == 21
    assert plog.read("m", limit=100)[0] == before
    plog.merge_bytes = 1  # nothing is small enough to merge now: merging again changes nothing
    plog.compact()
    assert plog.stats("m")["segments"] == 3


def test_merging_respects_the_size_cap(tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path)
    plog.set_rates({"m": 1.0})
    start = (int(NOW / plog.merge_span) - 3) * plog.merge_span
    for n in range(6):
        fill(plog, [start + n], prefix=f"p{n}-")
    size = max(s.bytes for s in plog.segments("m"))
    plog.merge_bytes = 2 * size + 2  # two sources a merge (each under half of it)
    plog.compact()
    assert plog.stats("m")["segments"] == 3
    assert plog.stats("m")["rows"] == 6


def test_the_flush_thread_tidies_now_and_then(tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path, max_age_seconds=7200, flush_seconds=0.05)
    plog.maintenance_seconds = 0.1
    plog.set_rates({"m": 1.0})
    start = (int(NOW / plog.merge_span) - 3) * plog.merge_span  # a finished span, 30 to 40 minutes ago
    fill(plog, [NOW - 10_000])  # expired
    fill(plog, [NOW - 30])
    fill(plog, [start + 1], prefix="a")
    fill(plog, [start + 2], prefix="b")
    plog.start()
    try:
        wait_for(lambda: plog.stats("m")["segments"] == 2, timeout=5)  # one expired, two merged
        assert plog.stats("m")["rows"] == 3
    finally:
        plog.close()


def test_a_segment_gone_since_the_listing_is_listed_again(
    plog: PredictionLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(plog, [NOW - 2, NOW - 1])
    (segment,) = plog.segments("m")
    stale = replace(segment, path=segment.path.with_name("seg-0-0-1-1-1-ab-1.parquet"))  # merged away
    listings = iter([[stale, segment]])
    real = plog.segments
    monkeypatch.setattr(plog, "segments", lambda model: next(listings, None) or real(model))
    rows, _ = plog.read("m")
    assert [r["request_id"] for r in rows] == ["r00001", "r00000"]


def test_maintenance_runs_one_process_at_a_time(tmp_path: Path) -> None:
    one, two = PredictionLog(tmp_path, max_age_seconds=60), PredictionLog(tmp_path, max_age_seconds=60)
    one.set_rates({"m": 1.0})
    fill(one, [NOW - 3600])
    with one._maintenance_lock("m") as mine:
        assert mine
        two.enforce_retention()  # another holds the model: skipped
        assert one.stats("m")["rows"] == 1
    two.enforce_retention()
    assert one.stats("m")["rows"] == 0


def test_delete_model(plog: PredictionLog) -> None:
    fill(plog, [NOW - 1])
    put(plog, NOW - 0.5, event(rid="still-buffered"))
    plog.delete_model("m")
    plog.flush()
    assert plog.stats("m")["rows"] == 0 and not (plog.directory / "m").exists()
    plog.observe(event(rid="after"))
    plog.flush()
    assert [r["request_id"] for r in plog.read("m")[0]] == ["after"]


# --- cost -----------------------------------------------------------------------------------------


def test_observe_cost(plog: PredictionLog) -> None:
    """Not an assertion on speed: prints what ``observe`` and ``flush`` cost on this machine."""
    ev = event(rid="x")
    batch, batches = plog.flush_rows, 40  # the buffer holds about a flush's worth in service
    costs = {}
    for label, rates in (("warm-up", {"m": 1.0}), ("sampled", {"m": 1.0}), ("half", {"m": 0.5}), ("off", {})):
        plog.set_rates(rates)
        spent = 0.0
        for _ in range(batches):
            plog._buffer.clear()
            started = time.perf_counter()
            for _ in range(batch):
                plog.observe(ev)
            spent += time.perf_counter() - started
        costs[label] = spent / (batch * batches) * 1e6
    del costs["warm-up"]  # the first round costs several times the others
    print("\nobserve() per call (µs): " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()))
    plog.set_rates({"m": 1.0})
    for _ in range(2):  # the first flush imports pyarrow
        plog._buffer.clear()
        for _ in range(batch):
            plog.observe(ev)
        started = time.perf_counter()
        plog.flush()
        spent = time.perf_counter() - started
    print(f"flush per row (µs): {spent / batch * 1e6:.2f}")
