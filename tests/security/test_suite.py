"""The bad-input and fault suite. After every case: the server is live, the deployed model answers as
before, no file appeared outside the data directory, no version is half-written, and the error is the
documented JSON."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelport.server import Services, build_app
from tests import fixtures
from tests.conftest import AUTH, make_services
from tests.security.cases import CASES, ROW, Case

ESCAPES = ("/tmp/modelport-pwned", "/tmp/modelport-escape", "/tmp/modelport-abs", "/tmp/modelport-fn")


@dataclass
class World:
    services: Services
    api: TestClient
    root: Path
    answer: Any
    ctx: dict[str, Any]

    @property
    def data(self) -> Path:
        return self.services.settings.data_dir


def files_outside(root: Path, data: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if data not in p.parents and p != data}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, artifacts: dict[str, Path]) -> Iterator[World]:
    root = tmp_path_factory.mktemp("world")
    services = make_services(
        root / "data",
        max_request_bytes=2 * 1024 * 1024,
        max_upload_bytes=4 * 1024 * 1024,
        archive_max_entries=50,
        archive_max_bytes=5 * 1024 * 1024,
        max_tensor_elements=100_000,
        max_dataset_bytes=1024 * 1024,
    )
    with TestClient(build_app(services), headers=AUTH, raise_server_exceptions=False) as api:
        assert (
            api.post("/api/v1/models/iris/versions", content=artifacts["iris.skops"].read_bytes()).status_code
            == 201
        )
        api.put("/api/v1/models/iris/aliases/production", json={"version": 1})
        keys = {}
        for name, body in {
            "infer": {"scopes": ["infer"]},
            "read": {"scopes": ["read"]},
            "revoked": {"scopes": ["read"]},
            "other": {"scopes": ["infer"], "models": "fraud-*"},
            "fenced": {"scopes": ["read", "write"], "models": "fraud-*"},
            "limited": {"scopes": ["read", "infer"], "rate_limit": 0.5},
        }.items():
            keys[name] = api.post("/api/v1/keys", json={"name": name, **body}).json()["key"]
        api.delete("/api/v1/keys/revoked")
        ctx = {
            "keys": keys,
            "skops": artifacts["iris.skops"].read_bytes(),
            "onnx_outside": fixtures.onnx_with_external_data("../secret.bin"),
        }
        answer = api.post("/v2/models/iris/infer", json=ROW).json()
        yield World(services, api, root, answer, ctx)
    services.close()


def assert_invariants(world: World, outside_before: set[str]) -> None:
    api = world.api
    assert api.get("/v2/health/live").status_code == 200
    assert api.post("/v2/models/iris/infer", json=ROW).json() == world.answer
    assert files_outside(world.root, world.data) == outside_before
    assert not any(os.path.exists(p) for p in ESCAPES)
    referenced = set()
    for model in world.services.registry.models.list_models():
        for v in world.services.registry.models.list_versions(model.name):
            assert v.state.value in ("ready", "failed"), v
            for f in v.manifest:
                referenced.add(f.sha256)
    for dataset in world.services.registry.datasets.all():
        referenced.update(v.sha256 for v in dataset.versions)
    stored = set(world.services.repository.store.digests())
    assert stored == referenced, "orphan or missing blobs"
    assert [p.name for p in (world.data / "tmp").iterdir() if not p.name.startswith("load-")] == []


def check_error(case: Case, response: Any, world: World) -> None:
    assert response.status_code == case.status, (case.name, response.status_code, response.text[:300])
    if response.status_code < 400:
        return
    body = response.json()
    assert set(body) == {"error"}, body
    text = response.text
    assert "Traceback" not in text  # nor any of the server's own paths (a client's input may be echoed)
    assert all(str(p) not in text for p in (world.root, Path.cwd(), Path(__file__).parent.parent.parent))
    if case.code is None:
        assert isinstance(body["error"], str) and body["error"]
    else:
        codes = {case.code} if isinstance(case.code, str) else case.code
        assert body["error"]["code"] in codes and body["error"]["message"], body
        if case.expect is not None:
            assert case.expect in body["error"]["message"], body
        if case.status == 422:
            assert body["error"].get("field"), body
    if case.status in (429, 503):
        assert response.headers.get("retry-after")


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}: {c.name}" for c in CASES])
def test_case(world: World, case: Case) -> None:
    before = files_outside(world.root, world.data)
    body = case.body(world.ctx) if callable(case.body) else case.body
    headers = case.headers(world.ctx) if callable(case.headers) else case.headers
    for _ in range(case.repeat):
        response = world.api.request(
            case.method, case.path, content=body, json=case.json, headers=headers, params=case.params
        )
    check_error(case, response, world)
    assert world.services.registry.jobs.recent() == []  # no refused request was queued
    if case.status == 201:  # accepted and stored, but it must never serve if it is unsafe
        assert response.json()["state"] in ("ready", "failed")
    assert_invariants(world, before)


def test_external_data_outside_is_recorded_failed(world: World) -> None:
    r = world.api.post("/api/v1/models/ext/versions", content=world.ctx["onnx_outside"])
    assert r.json()["state"] == "failed" and "outside" in r.json()["error"]
    assert world.api.put("/api/v1/models/ext/aliases/production", json={"version": 1}).status_code == 409


def test_concurrent_pushes_get_distinct_versions_and_whole_files(
    world: World, artifacts: dict[str, Path]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    payloads = [artifacts["iris.skops"].read_bytes(), artifacts["iris.json"].read_bytes()] * 4
    before = files_outside(world.root, world.data)
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda b: world.api.post("/api/v1/models/race/versions", content=b), payloads)
        )
    versions = sorted(a.json()["version"] for a in answers)
    assert [a.status_code for a in answers] == [201] * 8 and versions == list(range(1, 9))
    store = world.services.repository.store
    for a, payload in zip(answers, payloads, strict=True):
        (entry,) = a.json()["files"]
        out = world.root / "check"
        store.fetch(entry["sha256"], out)  # verifies the sha256 of what is on disk
        assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(payload).hexdigest()
        out.unlink()
    assert_invariants(world, before)


def test_corrupted_artifact_refuses_to_load_and_others_serve(
    world: World, artifacts: dict[str, Path]
) -> None:
    api = world.api
    pushed = api.post("/api/v1/models/fragile/versions", content=artifacts["iris.json"].read_bytes()).json()
    before = files_outside(world.root, world.data)
    sha = pushed["files"][0]["sha256"]
    blob = world.data / "artifacts" / "sha256" / sha[:2] / sha
    good = blob.read_bytes()
    blob.write_bytes(good[:-10] + b"corrupted!")
    world.services.dataplane.evict("fragile")
    r = api.post("/v2/models/fragile/infer", json=ROW)
    assert r.status_code == 503 and "corrupted" in r.json()["error"]
    blob.write_bytes(good)  # put it back so that the invariants (and later cases) see a sound store
    assert api.post("/v2/models/fragile/infer", json=ROW).status_code == 200
    assert_invariants(world, before)
