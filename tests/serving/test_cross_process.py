"""Correctness across processes that share one registry and one store: blob collection against pushes,
unload seen by every worker, and changes made without an audit row still followed everywhere."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import httpx

from modelport.client import Client
from modelport.registry import Registry, VersionState
from modelport.registry.db import make_engine
from tests import fixtures
from tests.conftest import ADMIN_KEY, AUTH, RunningServer, make_services

ROUNDS = 25


def _push_and_delete(
    data_dir: str, model: str, start: multiprocessing.synchronize.Event, out: object
) -> None:
    """One process's loop: push the shared content as ``model``, check its blobs, delete it again."""
    services = make_services(Path(data_dir), primary=False)
    failures: list[str] = []
    try:
        start.wait(30)
        for i in range(ROUNDS):
            record = services.repository.push_bytes(model, [fixtures.fake_artifact(width=3)], by=model)
            if record.state is not VersionState.READY:
                failures.append(f"{model} round {i}: {record.state.value}: {record.error}")
            for entry in record.manifest:
                if not services.repository.store.exists(entry.sha256):
                    failures.append(f"{model} round {i}: blob {entry.sha256[:12]} missing after push")
            if i % 2 == 0:  # keep every other version, so deletes and pushes interleave with survivors
                services.repository.delete_version(model, record.version, by=model)
    except Exception as exc:
        failures.append(f"{model}: {type(exc).__name__}: {exc}")
    finally:
        services.close()
    out.put((model, failures))  # type: ignore[attr-defined]


def test_deletes_never_collect_a_blob_a_concurrent_push_reuses(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_services(data_dir).close()  # migrations, admin key: what the primary process does
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_push_and_delete, args=(str(data_dir), name, start, out)) for name in ("a", "b")
    ]
    for p in procs:
        p.start()
    start.set()
    results = dict(out.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(30)
    assert results == {"a": [], "b": []}
    # every version that survived still loads from the store, sha256 verified
    services = make_services(data_dir)
    try:
        for model in ("a", "b"):
            kept = services.registry.models.list_versions(model)
            assert [v.version for v in kept] == list(range(2, ROUNDS + 1, 2))
            for version in kept:
                services.repository.load(version).close()
    finally:
        services.close()


def _statuses(url: str, count: int = 20) -> list[int]:
    row = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.9, 3.0, 5.1, 1.8]}]}
    return [
        httpx.post(f"{url}/v2/models/iris/infer", json=row, headers=AUTH).status_code for _ in range(count)
    ]


def _until(check: object, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_every_worker_follows_unload_and_changes_that_have_no_audit_row(
    tmp_path: Path, artifacts: dict[str, Path]
) -> None:
    server = RunningServer(tmp_path / "data", args=("--workers", "2"))
    try:
        with Client(server.url, ADMIN_KEY) as client:
            client.push("iris", artifacts["iris.skops"])
            client.push("iris", artifacts["iris.ubj"])
            client.promote("iris", 1)
        assert set(_statuses(server.url)) == {200}  # both workers have it loaded

        # the repository extension's unload: every worker stops serving the model, and says why
        unload = httpx.post(f"{server.url}/v2/repository/models/iris/unload", headers=AUTH)
        assert unload.status_code == 200
        assert _until(lambda: set(_statuses(server.url)) == {503})
        assert set(_statuses(server.url, 40)) == {503}
        index = httpx.post(f"{server.url}/v2/repository/index", headers=AUTH).json()
        assert {(e["version"], e["state"], e.get("reason")) for e in index} == {
            ("1", "UNAVAILABLE", "unloaded"),
            ("2", "UNAVAILABLE", "unloaded"),
        }
        ready = httpx.get(f"{server.url}/v2/models/iris/ready", headers=AUTH)
        assert ready.status_code == 503 and "unloaded" in ready.json()["error"]
        load = httpx.post(f"{server.url}/v2/repository/models/iris/load", headers=AUTH)
        assert load.status_code == 200
        assert _until(lambda: set(_statuses(server.url)) == {200})

        # an alias moved straight in the registry, with no audit row, still reaches every worker
        registry = Registry(make_engine(f"sqlite:///{(tmp_path / 'data' / 'registry.db').resolve()}"))
        audited = len(registry.audit.query(action="alias.set"))
        registry.aliases.set("iris", "production", 2, by="outside")
        assert len(registry.audit.query(action="alias.set")) == audited
        registry.engine.dispose()

        def all_on_two() -> bool:
            with Client(server.url, ADMIN_KEY) as client:
                return {client.infer("iris", {"input-0": fixtures.IRIS_X[:1]})[1] for _ in range(20)} == {"2"}

        assert _until(all_on_two)
    finally:
        server.stop()
