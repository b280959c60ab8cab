"""Content-addressed store, sha256 verified on load, and recovery after an interrupted push."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelport.errors import IntegrityError, NotFound, NotReady
from modelport.registry import VersionState
from modelport.registry.records import FileEntry
from modelport.server import Services
from modelport.storage.local import LocalArtifactStore
from tests import fixtures
from tests.conftest import make_services, push


def test_put_is_content_addressed_and_fetch_verifies(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    src = tmp_path / "blob"
    src.write_bytes(b"model bytes")
    sha = hashlib.sha256(b"model bytes").hexdigest()
    store.put(src, sha)
    assert not src.exists() and store.exists(sha) and store.digests() == [sha]
    assert (tmp_path / "store" / "sha256" / sha[:2] / sha).read_bytes() == b"model bytes"
    store.fetch(sha, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"model bytes"
    (tmp_path / "store" / "sha256" / sha[:2] / sha).write_bytes(b"tampered!!!")
    with pytest.raises(IntegrityError):
        store.fetch(sha, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
    with pytest.raises(IntegrityError):
        store.fetch("../../etc/passwd", tmp_path / "x")
    with pytest.raises(NotFound):
        store.fetch("0" * 64, tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    with store.open(sha) as f:
        assert f.read() == b"tampered!!!"  # the raw layer reads the bytes as kept, unchecked


def test_sweep_temp_removes_only_interrupted_writes(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    src = tmp_path / "blob"
    src.write_bytes(b"kept")
    sha = hashlib.sha256(b"kept").hexdigest()
    store.put(src, sha)
    shard = tmp_path / "store" / "sha256" / sha[:2]
    (shard / ".tmp-abc123").write_bytes(b"half a blob")
    assert store.sweep_temp() == 1
    assert [p.name for p in shard.iterdir()] == [sha] and store.digests() == [sha]


def test_corrupted_artifact_refuses_to_load_and_others_serve(
    api: TestClient, services: Services, artifacts: dict[str, Path]
) -> None:
    push(api, "iris", artifacts["iris.skops"])
    push(api, "onnx", artifacts["cancer.onnx"])
    blob = services.settings.data_dir / "artifacts" / "sha256"
    sha = services.registry.models.get_version("iris", 1).manifest[0].sha256
    (blob / sha[:2] / sha).write_bytes(b"corrupted")
    services.dataplane.evict("iris")
    row = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
    r = api.post("/v2/models/iris/infer", json=row)
    assert r.status_code == 503 and "corrupted" in r.json()["error"]
    onnx_row = {"inputs": [{"name": "X", "shape": [1, 30], "datatype": "FP32", "data": [0.1] * 30}]}
    assert api.post("/v2/models/onnx/infer", json=onnx_row).status_code == 200


def test_recover_removes_orphans_and_scratch(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    services = make_services(tmp_path / "d")
    record = services.repository.push_bytes("iris", [artifacts["iris.skops"].read_bytes()], by="t")
    # a crash after the bytes were stored but before the row was committed leaves an orphan blob
    orphan = tmp_path / "orphan"
    orphan.write_bytes(b"half a push")
    services.repository.store.put(orphan, hashlib.sha256(b"half a push").hexdigest())
    (services.settings.data_dir / "tmp" / "upload-dead").write_bytes(b"partial")
    services.close()

    again = make_services(tmp_path / "d")
    assert again.repository.store.digests() == [record.manifest[0].sha256]
    assert list((tmp_path / "d" / "tmp").iterdir()) == []
    assert again.registry.models.get_version("iris", 1).state is VersionState.READY
    again.close()


def test_recover_rechecks_versions_left_pending(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    services = make_services(tmp_path / "d")
    path = artifacts["iris.skops"]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    staged = tmp_path / "copy"
    staged.write_bytes(path.read_bytes())
    services.repository.store.put(staged, sha)
    services.registry.models.ensure_model("iris", by="t")
    services.registry.models.add_version(  # committed, but the process died before its check ran
        "iris",
        sha256=sha,
        size=path.stat().st_size,
        manifest=[FileEntry("iris.skops", sha, 1)],
        framework="sklearn",
        by="t",
    )
    with pytest.raises(NotReady):
        services.dataplane.ready_version("iris", "1")
    services.close()

    again = make_services(tmp_path / "d")
    record = again.registry.models.get_version("iris", 1)
    assert record.state is VersionState.READY and record.signature
    result = asyncio.run(
        again.dataplane.predict("iris", "1", {"input-0": fixtures.IRIS_X[:2]}, {"input-0": "FP64"})
    )
    assert result.outputs["predict"].tolist() == fixtures.iris_forest().predict(fixtures.IRIS_X[:2]).tolist()
    assert np.asarray(result.outputs["predict_proba"]).shape == (2, 3)
    again.close()


def test_loads_are_bounded(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    import threading
    import time

    services = make_services(tmp_path / "d", max_concurrent_loads=1)
    repo = services.repository
    record = repo.push_bytes("iris", [artifacts["iris.skops"].read_bytes()], by="t")
    active, peak = 0, 0
    lock = threading.Lock()
    real_load = repo._load

    def counting_load(*args, **kwargs):  # type: ignore[no-untyped-def]  # whatever _load takes
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        try:
            return real_load(*args, **kwargs)
        finally:
            with lock:
                active -= 1

    repo._load = counting_load  # type: ignore[method-assign]
    threads = [threading.Thread(target=lambda: repo.load(record).close()) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 1
    services.close()
