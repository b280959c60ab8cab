"""The runtime seam v2 seen from serving: declared batching (tokens, none, own scheduler), device
placement with a GPU budget, observers after each request, and routes that switch only once warm."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelport.errors import LoadError, NotReady
from modelport.registry import VersionRecord
from modelport.serving.observers import InferenceEvent
from modelport.serving.router import Route
from tests import fixtures
from tests.conftest import make_services
from tests.serving.test_batching import body, serve

MB = 1024 * 1024


async def push(
    client: httpx.AsyncClient, name: str, cls: type[fixtures.FakeRuntime], **config: float
) -> None:
    r = await client.post(f"/api/v1/models/{name}/versions", content=fixtures.fake_artifact_of(cls, **config))
    assert r.status_code == 201 and r.json()["state"] == "ready", r.text


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    services, http = serve(tmp_path, max_batch_delay_ms=30, max_batch_size=12, max_batch_tokens=12)
    http.services = services  # type: ignore[attr-defined]
    yield http
    await http.aclose()
    services.close()


async def test_token_budget_counts_elements_not_rows(client: httpx.AsyncClient) -> None:
    await push(client, "tok", fixtures.FakeTokenRuntime, delay=0.05)
    await client.post("/v2/models/tok/infer", json=body([[1.0, 2.0, 3.0]]))  # load first
    fixtures.FakeRuntime.calls.clear()
    responses = await asyncio.gather(
        *(client.post("/v2/models/tok/infer", json=body([[float(i), 1.0, 1.0]])) for i in range(12))
    )
    assert all(r.status_code == 200 for r in responses)
    assert [r.json()["outputs"][0]["data"][0] for r in responses] == [2.0 * i for i in range(12)]
    # each request is 3 elements: a budget of 12 elements takes at most 4 of them (12 rows under rows)
    calls = fixtures.FakeRuntime.calls
    assert sum(calls) == 12 and max(calls) == 4


async def test_unbatched_runtime_gets_one_request_per_call_several_at_once(client: httpx.AsyncClient) -> None:
    await push(client, "solo", fixtures.FakeUnbatchedRuntime, delay=0.1)
    await client.post("/v2/models/solo/infer", json=body([[1.0, 2.0, 3.0]]))  # load first
    fixtures.FakeRuntime.calls.clear()
    fixtures.FakeUnbatchedRuntime.peak = 0
    rows = [[[float(i), 0.0, 0.0], [1.0, 1.0, 1.0]] for i in range(6)]
    responses = await asyncio.gather(*(client.post("/v2/models/solo/infer", json=body(r)) for r in rows))
    assert all(r.status_code == 200 for r in responses)
    assert fixtures.FakeRuntime.calls == [2] * 6  # never merged
    assert fixtures.FakeUnbatchedRuntime.peak > 1  # but run side by side


async def test_runtime_with_its_own_scheduler_replaces_the_batcher(client: httpx.AsyncClient) -> None:
    fixtures.FakeSchedulingRuntime.schedulers.clear()
    await push(client, "own", fixtures.FakeSchedulingRuntime)
    fixtures.FakeRuntime.calls.clear()
    r = await client.post("/v2/models/own/infer", json=body([[1.0, 2.0, 3.0]]))
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [3.0, 6.0, 9.0]
    (scheduler,) = fixtures.FakeSchedulingRuntime.schedulers
    assert scheduler.submitted == 1 and fixtures.FakeRuntime.calls == [1]  # only the warm-up used predict
    put = await client.put("/api/v1/models/own/versions/1/config", json={"batching": {"max_queue": 7}})
    assert put.status_code == 200
    assert scheduler.policy.max_queue == 7  # type: ignore[attr-defined]
    await client.delete("/api/v1/models/own")
    assert scheduler.closed


async def test_gpu_only_runtime_fails_its_check_without_a_gpu(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/models/gpu/versions", content=fixtures.fake_artifact_of(fixtures.FakeGpuRuntime, gpu_mb=10)
    )
    assert r.status_code == 201 and r.json()["state"] == "failed"
    assert "needs a GPU" in r.json()["error"]
    infer = await client.post("/v2/models/gpu/infer", json=body([[1.0, 2.0, 3.0]]))
    assert infer.status_code in (404, 503)


async def test_device_and_dtype_are_checked_and_a_new_device_reloads(client: httpx.AsyncClient) -> None:
    artifact = fixtures.fake_artifact_of(fixtures.FakeRuntime)
    bad = await client.post("/api/v1/models/dev/versions?device=tpu", content=artifact)
    assert bad.status_code == 400 and "device" in bad.text
    bad = await client.post("/api/v1/models/dev/versions?dtype=int4", content=artifact)
    assert bad.status_code == 400 and "dtype" in bad.text
    # a CPU-only runtime asked for a GPU: failed at its check, with the reason, nothing served
    gpu = await client.post("/api/v1/models/dev/versions?device=cuda", content=artifact)
    assert gpu.json()["state"] == "failed" and "CPU only" in gpu.json()["error"]
    await push(client, "dev", fixtures.FakeRuntime)
    assert (
        await client.post("/v2/models/dev/versions/2/infer", json=body([[1.0, 2.0, 3.0]]))
    ).status_code == 200
    cache = client.services.dataplane.cache  # type: ignore[attr-defined]
    assert ("dev", 2) in cache.loaded_keys()
    patch = await client.patch(
        "/api/v1/models/dev/versions/2/config", json={"device": "cpu", "dtype": "float16"}
    )
    assert patch.status_code == 200 and patch.json()["config"] == {"device": "cpu", "dtype": "float16"}
    wrong = await client.patch("/api/v1/models/dev/versions/2/config", json={"device": "cuda:1"})
    assert wrong.status_code == 400 and "runs on cpu" in wrong.text  # a CPU-only runtime
    # loaded again the new way before the old copy is retired: no request finds it missing
    assert cache.peek(("dev", 2)).loaded.options.dtype == "float16"
    r = await client.post("/v2/models/dev/versions/2/infer", json=body([[1.0, 2.0, 3.0]]))
    assert r.status_code == 200
    shown = (await client.get("/v2/models/dev/versions/2")).json()["parameters"]
    assert (shown["device"], shown["dtype"]) == ("cpu", "float16")  # where it runs, as loaded


def test_gpu_budget_places_on_the_gpu_and_evicts_by_gpu_memory(tmp_path: Path) -> None:
    services = make_services(tmp_path / "d", gpu_memory_budget=1000 * MB)
    fixtures.FakeGpuRuntime.devices.clear()
    try:
        records = [
            services.repository.push_bytes(
                n, [fixtures.fake_artifact_of(fixtures.FakeGpuRuntime, gpu_mb=600)], by="t"
            )
            for n in ("a", "b")
        ]
        cache = services.dataplane.cache
        cache.get(records[0])
        assert cache.used_gpu() == 600 * MB and fixtures.FakeGpuRuntime.devices[-1] == "cuda"
        cache.get(records[1])  # 1200 MB would not fit: the least recently used goes
        assert cache.loaded_keys() == [("b", 1)] and cache.used_gpu() == 600 * MB
    finally:
        services.close()


def test_out_of_memory_at_load_fails_the_version_and_the_server_keeps_serving(tmp_path: Path) -> None:
    services = make_services(tmp_path / "d", gpu_memory_budget=1000 * MB)
    try:
        repository = services.repository
        big = repository.push_bytes(
            "big", [fixtures.fake_artifact_of(fixtures.FakeGpuRuntime, gpu_mb=1)], by="t"
        )
        small = repository.push_bytes("small", [fixtures.fake_artifact(width=3)], by="t")
        assert big.state.value == small.state.value == "ready"
        cache = services.dataplane.cache
        cache.get(small)
        fixtures.FakeGpuRuntime.full = True
        with pytest.raises(LoadError, match="not enough memory on cuda"):
            cache.get(big)
        failed = services.registry.models.get_version("big", 1)
        assert failed.state.value == "failed" and "not enough memory" in (failed.error or "")
        assert cache.loaded_keys() == [("small", 1)]  # the others keep serving
    finally:
        fixtures.FakeGpuRuntime.full = False
        services.close()


async def test_observers_see_every_answer_after_it_is_sent_and_cannot_break_it(
    client: httpx.AsyncClient,
) -> None:
    seen: list[InferenceEvent] = []

    class Broken:
        def observe(self, event: InferenceEvent) -> None:
            raise RuntimeError("observer bug")

    class Recorder:
        def observe(self, event: InferenceEvent) -> None:
            seen.append(event)

    observers = client.services.dataplane.observers  # type: ignore[attr-defined]
    observers.add(Broken())
    observers.add(Recorder())
    await push(client, "obs", fixtures.FakeRuntime)
    ok = await client.post("/v2/models/obs/infer", json=body([[1.0, 2.0, 3.0]]))
    missing = await client.post("/v2/models/nope/infer", json=body([[1.0, 2.0, 3.0]]))
    bad = await client.post("/v2/models/obs/infer", json=body([[1.0, 2.0]]))
    assert (ok.status_code, missing.status_code, bad.status_code) == (200, 404, 400)
    await asyncio.sleep(0)  # observers run once the answer has been handed over
    assert [(e.model, e.version, e.status, e.error, e.surface) for e in seen] == [
        ("obs", 1, 200, None, "v2"),
        ("", None, 404, "not_found", "v2"),
        ("obs", 1, 400, "invalid_input", "v2"),  # refused by the version it reached
    ]
    np.testing.assert_array_equal(seen[0].inputs["x"], [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(seen[0].outputs["y"], [[2.0, 4.0, 6.0]])
    assert all(e.duration > 0 for e in seen)


def test_a_route_switches_only_after_its_new_target_is_warm(tmp_path: Path) -> None:
    services = make_services(tmp_path / "d")
    try:
        repo, router = services.repository, services.dataplane.router
        for _ in range(2):
            repo.push_bytes("m", [fixtures.fake_artifact()], by="t")
        repo.promote("m", "production", 1, by="t")
        router.lookup("m", None)
        repo.promote("m", "production", 2, by="t")
        warmed: list[int] = []

        def failing_warm(record: VersionRecord) -> None:
            warmed.append(record.version)
            raise LoadError("cannot load")

        router.refresh({"m"}, failing_warm)
        assert warmed == [2] and router.cached("m", None) is None  # dropped, never switched to v2 unwarmed
        router.lookup("m", None)
        router.refresh({"m"}, lambda record: warmed.append(record.version))
        route = router.cached("m", None)
        assert isinstance(route, Route) and route.pick().version == 2 and warmed == [2]  # unchanged: no load
        services.registry.models.set_unloaded("m", True)
        with pytest.raises(NotReady, match="unloaded"):
            router.route_for("m", "1")
    finally:
        services.close()


def test_a_route_resolved_while_an_alias_moves_is_not_remembered(tmp_path: Path) -> None:
    """A first request reads the alias (v1); the alias moves and the feed is applied before that request
    remembers its route: remembering it would serve v1 until the next change."""
    services = make_services(tmp_path / "d")
    try:
        repo, router = services.repository, services.dataplane.router
        for _ in range(2):
            repo.push_bytes("m", [fixtures.fake_artifact()], by="t")
        repo.promote("m", "production", 1, by="t")
        resolve = router.route_for

        def slow_resolve(model: str, ref: str | None) -> Route:
            route = resolve(model, ref)  # reads v1 ...
            repo.promote("m", "production", 2, by="t")  # ... then the alias moves and is applied
            services.dataplane.reconcile()
            return route

        router.route_for = slow_resolve  # type: ignore[method-assign]
        assert router.lookup("m", None).pick().version == 1  # this request was routed before the move
        router.route_for = resolve  # type: ignore[method-assign]
        assert router.cached("m", None) is None
        assert router.lookup("m", None).pick().version == 2
        assert router.cached("m", None) is not None
    finally:
        services.close()


async def test_version_numbers_are_never_reused_after_a_delete(client: httpx.AsyncClient) -> None:
    await push(client, "n", fixtures.FakeRuntime)
    assert (await client.delete("/api/v1/models/n/versions/1")).status_code == 204
    await push(client, "n", fixtures.FakeRuntime)
    versions = (await client.get("/api/v1/models/n/versions")).json()
    assert [v["version"] for v in versions] == [2]
    assert (
        await client.post("/v2/models/n/versions/1/infer", json=body([[1.0, 2.0, 3.0]]))
    ).status_code == 404
