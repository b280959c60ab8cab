"""Storage faults on a real server: a full disk during a push."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import AUTH, RunningServer

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.9, 3.0, 5.1, 1.8]}]}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """A 12 MB tmpfs for the data directory when this process may mount one (root); otherwise a 6 MB
    per-file size limit on the server process (EFBIG instead of ENOSPC: the same failed write)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = (
        os.geteuid() == 0
        and shutil.which("mount") is not None
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        == 0
    )
    prefix: tuple[str, ...] = () if mounted else ("prlimit", "--fsize=6000000", "--")
    if not mounted and shutil.which("prlimit") is None:
        pytest.skip("neither a tmpfs mount nor prlimit is available to simulate a full disk")
    try:
        yield mount, prefix
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_during_push_is_a_clean_error(
    small_disk: tuple[Path, tuple[str, ...]], artifacts: dict[str, Path]
) -> None:
    mount, prefix = small_disk
    data = mount / "data"
    server = RunningServer(data, prefix=prefix)
    try:
        url = server.url
        r = httpx.post(
            f"{url}/api/v1/models/iris/versions", content=artifacts["iris.skops"].read_bytes(), headers=AUTH
        )
        assert r.status_code == 201
        answer = httpx.post(f"{url}/v2/models/iris/infer", json=ROW, headers=AUTH).json()

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("model.onnx", b"\x08\x07\x12\x00")
            zf.writestr("weights.bin", os.urandom(16 * 1024 * 1024))
        r = httpx.post(f"{url}/api/v1/models/iris/versions", content=buf.getvalue(), headers=AUTH, timeout=60)
        assert r.status_code == 507 and r.json()["error"]["code"] == "storage_full", r.text

        assert httpx.get(f"{url}/v2/health/live").status_code == 200
        assert httpx.post(f"{url}/v2/models/iris/infer", json=ROW, headers=AUTH).json() == answer
        versions = httpx.get(f"{url}/api/v1/models/iris/versions", headers=AUTH).json()
        assert [v["version"] for v in versions] == [1]  # nothing half-written is visible
        stored = {p.name for p in (data / "artifacts" / "sha256").glob("*/*")}
        assert stored == {f["sha256"] for v in versions for f in v["files"]}
        # only the directory the served version was loaded from; no upload or staging leftovers
        assert [p.name for p in (data / "tmp").iterdir() if not p.name.startswith("load-")] == []
        r = httpx.post(
            f"{url}/api/v1/models/iris/versions", content=artifacts["iris.skops"].read_bytes(), headers=AUTH
        )
        assert r.status_code == 201 and r.json()["version"] == 2  # the space was given back
    finally:
        server.stop()
