"""SIGKILL the real server in the middle of a push; after a restart nothing half-written is visible."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelport.client import Client
from tests.conftest import ADMIN_KEY, AUTH, RunningServer

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.9, 3.0, 5.1, 1.8]}]}


def big_archive(onnx: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("model.onnx", onnx.read_bytes())
        zf.writestr("weights.bin", os.urandom(48 * 1024 * 1024))
    return buf.getvalue()


def push_and_kill(server: RunningServer, payload: bytes, kill_after_bytes: int | None, delay: float) -> None:
    """Stream ``payload``; SIGKILL the server after ``kill_after_bytes``, or ``delay`` s after the end."""
    sent_enough = threading.Event()

    def body() -> Iterator[bytes]:
        step = 1024 * 1024
        for start in range(0, len(payload), step):
            if kill_after_bytes is not None and start >= kill_after_bytes:
                sent_enough.set()
                sent_enough.wait()
            yield payload[start : start + step]
        sent_enough.set()

    def upload() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server dies under us: that is the point
            httpx.post(
                f"{server.url}/api/v1/models/iris/versions",
                content=body(),
                headers={
                    **AUTH,
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(payload)),
                },
                timeout=60,
            )

    thread = threading.Thread(target=upload)
    thread.start()
    assert sent_enough.wait(60)
    if kill_after_bytes is None:
        threading.Event().wait(delay)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    server.log.close()
    thread.join(60)


def assert_consistent(data_dir: Path, url: str, expected_answer: dict[str, object]) -> None:
    with Client(url, ADMIN_KEY) as client:
        versions = client.list_versions("iris")
        assert versions[0]["version"] == 1 and versions[0]["state"] == "ready"
        referenced = set()
        for v in versions:
            assert v["state"] in ("ready", "failed"), v  # nothing pending or half-visible
            for f in v["files"]:
                referenced.add(f["sha256"])
                blob = data_dir / "artifacts" / "sha256" / f["sha256"][:2] / f["sha256"]
                assert hashlib.sha256(blob.read_bytes()).hexdigest() == f["sha256"]
        stored = {p.name for p in (data_dir / "artifacts" / "sha256").glob("*/*")}
        assert stored == referenced, "the store holds blobs the registry does not know (or misses some)"
        assert list((data_dir / "tmp").iterdir()) == []
    answer = httpx.post(f"{url}/v2/models/iris/infer", json=ROW, headers=AUTH).json()
    assert answer["outputs"] == expected_answer["outputs"] and answer["model_version"] == "1"


@pytest.mark.parametrize(
    ("kill_after_bytes", "delay"),
    [(16 * 1024 * 1024, 0.0), (None, 0.05), (None, 0.3)],
    ids=["mid-upload", "just-after-upload", "while-storing"],
)
def test_sigkill_during_push_leaves_no_trace(
    tmp_path: Path, artifacts: dict[str, Path], kill_after_bytes: int | None, delay: float
) -> None:
    data_dir = tmp_path / "data"
    server = RunningServer(data_dir)
    try:
        with Client(server.url, ADMIN_KEY) as client:
            client.push("iris", artifacts["iris.skops"])
            client.promote("iris", 1)
        before = httpx.post(f"{server.url}/v2/models/iris/infer", json=ROW, headers=AUTH).json()
        push_and_kill(server, big_archive(artifacts["cancer.onnx"]), kill_after_bytes, delay)
        server = RunningServer(data_dir, port=server.port)
        assert_consistent(data_dir, server.url, before)
    finally:
        server.stop()
