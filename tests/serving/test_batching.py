"""Batching, queue bounds and timeouts, through the V2 API with concurrent clients in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelport.server import Services, build_app
from tests import fixtures
from tests.conftest import AUTH, make_services


def body(rows: list[list[float]], **extra: object) -> dict[str, object]:
    return {
        "inputs": [{"name": "x", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": rows}],
        **extra,
    }


async def push_fake(client: httpx.AsyncClient, name: str, **config: float) -> None:
    r = await client.post(f"/api/v1/models/{name}/versions", content=fixtures.fake_artifact(**config))
    assert r.status_code == 201 and r.json()["state"] == "ready", r.text


def serve(tmp_path: Path, **settings: object) -> tuple[Services, httpx.AsyncClient]:
    services = make_services(tmp_path / "data", **settings)
    transport = httpx.ASGITransport(app=build_app(services))
    return services, httpx.AsyncClient(transport=transport, base_url="http://test", headers=AUTH, timeout=30)


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    services, client = serve(tmp_path, max_batch_delay_ms=20, max_batch_size=32)
    await push_fake(client, "fake", delay=0.02)
    await client.post("/v2/models/fake/infer", json=body([[1.0, 2.0, 3.0]]))  # load and warm up first
    fixtures.FakeRuntime.calls.clear()
    yield client
    await client.aclose()
    services.close()


async def test_concurrent_requests_are_merged_and_split_back(fake: httpx.AsyncClient) -> None:
    rows = [[[float(i), i + 0.5, -1.0]] for i in range(40)]
    responses = await asyncio.gather(*(fake.post("/v2/models/fake/infer", json=body(r)) for r in rows))
    for r, sent in zip(responses, rows, strict=True):
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        assert out["shape"] == [1, 3] and out["data"] == (np.asarray(sent) * 2).reshape(-1).tolist()
    calls = fixtures.FakeRuntime.calls
    assert sum(calls) == 40 and len(calls) < 10 and max(calls) <= 32  # merged, never above max_batch_size


async def test_multi_row_requests_keep_their_rows(fake: httpx.AsyncClient) -> None:
    sizes = [1, 5, 3, 7, 2]
    payloads = [np.arange(n * 3, dtype=float).reshape(n, 3) + 100 * i for i, n in enumerate(sizes)]
    responses = await asyncio.gather(
        *(fake.post("/v2/models/fake/infer", json=body(p.tolist())) for p in payloads)
    )
    for r, p in zip(responses, payloads, strict=True):
        out = r.json()["outputs"][0]
        assert out["shape"] == list(p.shape)
        np.testing.assert_array_equal(np.asarray(out["data"]).reshape(p.shape), p * 2)


async def test_one_bad_request_does_not_fail_its_batch(fake: httpx.AsyncClient) -> None:
    rows = [[[float(i), 1.0, 1.0]] for i in range(12)]
    rows[5] = [[-1.0, 1.0, 1.0]]  # the fake model raises on a negative first value
    responses = await asyncio.gather(*(fake.post("/v2/models/fake/infer", json=body(r)) for r in rows))
    statuses = [r.status_code for r in responses]
    assert statuses[5] == 400 and "negative" in responses[5].json()["error"]
    assert statuses[:5] + statuses[6:] == [200] * 11


async def test_mixed_shapes_are_rejected_per_request(fake: httpx.AsyncClient) -> None:
    good = [fake.post("/v2/models/fake/infer", json=body([[1.0, 2.0, 3.0]])) for _ in range(8)]
    bad = [fake.post("/v2/models/fake/infer", json=body([[1.0, 2.0]])) for _ in range(4)]
    responses = await asyncio.gather(*good, *bad)
    assert [r.status_code for r in responses] == [200] * 8 + [400] * 4
    assert "shape" in responses[-1].json()["error"]


async def test_batching_settings_per_version_in_metadata(tmp_path: Path) -> None:
    services, client = serve(tmp_path)
    r = await client.post(
        "/api/v1/models/tuned/versions",
        params={"max_batch_size": 8, "max_delay_ms": 5},
        content=fixtures.fake_artifact(),
    )
    assert r.status_code == 201, r.text
    await push_fake(client, "plain")
    tuned = (await client.get("/v2/models/tuned")).json()["parameters"]
    assert tuned["max_batch_size"] == 8 and tuned["max_delay_ms"] == 5
    plain = (await client.get("/v2/models/plain")).json()["parameters"]
    assert plain["max_batch_size"] == 256 and plain["max_delay_ms"] == 2
    r = await client.put("/api/v1/models/plain/versions/1/config", json={"batching": {"max_batch_size": 4}})
    assert r.status_code == 200 and r.json()["config"] == {"batching": {"max_batch_size": 4}}
    assert (await client.get("/v2/models/plain")).json()["parameters"]["max_batch_size"] == 4
    bad = await client.put("/api/v1/models/plain/versions/1/config", json={"batching": {"max_batch_size": 0}})
    assert bad.status_code == 400
    await client.aclose()
    services.close()


async def test_queue_bound_answers_503_with_retry_after(tmp_path: Path) -> None:
    services, client = serve(tmp_path, max_queue=2, max_batch_size=1, max_batch_delay_ms=0)
    await push_fake(client, "slow", delay=0.3)
    responses = await asyncio.gather(
        *(client.post("/v2/models/slow/infer", json=body([[1.0, 2.0, 3.0]])) for _ in range(8))
    )
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}
    overloaded = next(r for r in responses if r.status_code == 503)
    assert overloaded.headers["retry-after"] == "1" and "queue" in overloaded.json()["error"]
    after = await client.post("/v2/models/slow/infer", json=body([[1.0, 2.0, 3.0]]))
    assert after.status_code == 200
    await client.aclose()
    services.close()


async def test_request_timeout_answers_504_and_server_keeps_serving(tmp_path: Path) -> None:
    services, client = serve(tmp_path, request_timeout=0.2)
    await push_fake(client, "slow", delay=0.6)
    await push_fake(client, "quick")
    r = await client.post("/v2/models/slow/infer", json=body([[1.0, 2.0, 3.0]]))
    assert r.status_code == 504 and "0.2" in r.json()["error"]
    r = await client.post(
        "/v2/models/slow/infer", json=body([[1.0, 2.0, 3.0]], parameters={"timeout": 100_000})
    )
    assert r.status_code == 504  # Triton clients send timeout in microseconds
    assert (await client.post("/v2/models/quick/infer", json=body([[1.0, 2.0, 3.0]]))).status_code == 200
    await client.aclose()
    services.close()
