"""``GET /metrics`` as Prometheus parses it: every family with its type and labels, requests split by
surface and status, the latency split (queue wait per request, compute per batch), loads, evictions by
reason, gauges that leave with their version, and no series for names that are not models here."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from modelport.monitoring.metrics import Metrics
from modelport.server import build_app
from modelport.serving.observers import InferenceEvent
from tests import fixtures
from tests.conftest import AUTH, make_services, push

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

FAMILIES = {  # name (as parsed: counters without _total) -> (type, label names)
    "modelport_inference_requests": ("counter", {"model", "version", "surface", "status"}),
    "modelport_inference_request_duration_seconds": ("histogram", {"model", "version", "surface"}),
    "modelport_queue_wait_seconds": ("histogram", {"model", "version"}),
    "modelport_compute_seconds": ("histogram", {"model", "version"}),
    "modelport_batch_size_rows": ("histogram", {"model", "version"}),
    "modelport_queue_depth": ("gauge", {"model", "version"}),
    "modelport_inflight_requests": ("gauge", {"model", "version"}),
    "modelport_model_load_seconds": ("histogram", {"model", "version"}),
    "modelport_model_loads": ("counter", {"model", "version", "outcome"}),
    "modelport_cache_evictions": ("counter", {"reason"}),
    "modelport_loaded_model_memory_bytes": ("gauge", set()),
    "modelport_loaded_versions": ("gauge", set()),
}
IRIS_ROW = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": [1, 2, 3, 4] * 2}]}
FAKE_ROW = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}


def scrape(client: TestClient | httpx.Response) -> tuple[dict[str, Any], Samples]:
    """The families by name, and every sample by (name, sorted labels)."""
    text = client.text if isinstance(client, httpx.Response) else client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def label_values(samples: Samples, label: str) -> set[str]:
    return {dict(labels)[label] for _, labels in samples if label in dict(labels)}


def push_fake(api: TestClient, name: str, cls: type[fixtures.FakeRuntime], **config: float) -> None:
    r = api.post(f"/api/v1/models/{name}/versions", content=fixtures.fake_artifact_of(cls, **config))
    assert r.status_code == 201, r.text


def test_v2_traffic_errors_and_unknown_names(api: TestClient, artifacts: dict[str, Path]) -> None:
    assert push(api, "iris", artifacts["iris.skops"]).status_code == 201
    push_fake(api, "solo", fixtures.FakeUnbatchedRuntime)  # no batching: each request its own call
    for _ in range(3):
        assert api.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 200
        assert api.post("/v2/models/solo/versions/1/infer", json=FAKE_ROW).status_code == 200
    bad = {"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}
    assert api.post("/v2/models/iris/infer", json=bad).status_code == 400
    assert api.post("/v2/models/ghost-a/infer", json=IRIS_ROW).status_code == 404
    assert api.post("/v2/models/iris/versions/7/infer", json=IRIS_ROW).status_code == 404
    nobody = {"Authorization": "Bearer mp_not-a-key-0123456789"}
    assert api.post("/v2/models/ghost-b/infer", json=IRIS_ROW, headers=nobody).status_code == 401
    assert api.post("/v2/models/ghost-c/infer", content=b"{not json").status_code in (400, 404)

    families, samples = scrape(api)
    for name, (kind, labels) in FAMILIES.items():
        assert families[name].type == kind, name
        seen = {k for s in families[name].samples for k in s.labels if k not in ("le", "quantile")}
        assert seen == labels, (name, seen)
    assert label_values(samples, "model") == {"", "iris", "solo"}  # no ghost made a series
    requests = "modelport_inference_requests_total"
    assert value(samples, requests, model="iris", version="1", surface="v2", status="200") == 3
    assert value(samples, requests, model="solo", version="1", surface="v2", status="200") == 3
    # refused by the version it reached (a wrong shape): counted against that version
    assert value(samples, requests, model="iris", version="1", surface="v2", status="400") == 1
    unknown = sum(v for (n, labels), v in samples.items() if n == requests and dict(labels)["model"] == "")
    assert unknown == 4 and value(samples, requests, model="", version="", surface="v2", status="401") == 1
    latency = "modelport_inference_request_duration_seconds_count"
    assert value(samples, latency, model="iris", version="1", surface="v2") == 4  # the 400 too

    # the latency split: a queue wait per request, a compute time per predict call (one per batch)
    for model in ("iris", "solo"):
        assert value(samples, "modelport_queue_wait_seconds_count", model=model, version="1") == 3
        computed = value(samples, "modelport_compute_seconds_count", model=model, version="1")
        assert computed is not None and 1 <= computed <= 3
        assert value(samples, "modelport_batch_size_rows_count", model=model, version="1") == computed
        assert value(samples, "modelport_model_load_seconds_count", model=model, version="1") == 1
        assert value(samples, "modelport_model_loads_total", model=model, version="1", outcome="ok") == 1
        assert value(samples, "modelport_inflight_requests", model=model, version="1") == 0
    assert value(samples, "modelport_batch_size_rows_sum", model="iris", version="1") == 6
    assert value(samples, "modelport_compute_seconds_count", model="solo", version="1") == 3
    assert value(samples, "modelport_queue_depth", model="iris", version="1") == 0
    assert value(samples, "modelport_queue_depth", model="solo", version="1") is None  # it has no queue
    assert value(samples, "modelport_loaded_versions") == 2
    assert {value(samples, "modelport_cache_evictions_total", reason=r) for r in ("memory", "deleted")} == {0}


def test_versions_that_leave_take_their_gauges(api: TestClient) -> None:
    push_fake(api, "m", fixtures.FakeRuntime)
    push_fake(api, "m", fixtures.FakeRuntime, delay=0)
    for version in ("1", "2"):
        assert api.post(f"/v2/models/m/versions/{version}/infer", json=FAKE_ROW).status_code == 200
    _, samples = scrape(api)
    for version in ("1", "2"):
        for gauge in ("modelport_queue_depth", "modelport_inflight_requests"):
            assert value(samples, gauge, model="m", version=version) == 0

    assert api.delete("/api/v1/models/m/versions/1").status_code == 204
    _, samples = scrape(api)
    for gauge in ("modelport_queue_depth", "modelport_inflight_requests"):
        assert value(samples, gauge, model="m", version="1") is None  # gone with its version
        assert value(samples, gauge, model="m", version="2") == 0
    assert value(samples, "modelport_cache_evictions_total", reason="deleted") == 1
    # what it did stays counted
    assert value(
        samples, "modelport_inference_requests_total", model="m", version="1", surface="v2", status="200"
    )

    assert api.post("/v2/repository/models/m/unload").status_code == 200
    _, samples = scrape(api)
    assert value(samples, "modelport_inflight_requests", model="m", version="2") is None
    assert value(samples, "modelport_cache_evictions_total", reason="unloaded") == 1
    assert value(samples, "modelport_loaded_versions") == 0


def test_memory_evictions_and_failed_loads(tmp_path: Path) -> None:
    size = len(fixtures.fake_artifact())
    services = make_services(tmp_path / "data", model_memory_budget=2 * size - 1)  # one fits, not two
    with TestClient(build_app(services), headers=AUTH, raise_server_exceptions=False) as api:
        push_fake(api, "a", fixtures.FakeRuntime)
        push_fake(api, "b", fixtures.FakeRuntime)
        push_fake(api, "big", fixtures.FakeRuntime, width=3, padding=10.0**30)  # over the budget alone
        assert api.post("/v2/models/a/infer", json=FAKE_ROW).status_code == 200
        assert api.post("/v2/models/b/infer", json=FAKE_ROW).status_code == 200  # a makes room
        assert api.post("/v2/models/big/infer", json=FAKE_ROW).status_code == 503
        _, samples = scrape(api)
    services.close()
    assert value(samples, "modelport_cache_evictions_total", reason="memory") == 1
    assert value(samples, "modelport_inflight_requests", model="a", version="1") is None
    assert value(samples, "modelport_inflight_requests", model="b", version="1") == 0
    loads = "modelport_model_loads_total"
    assert value(samples, loads, model="big", version="1", outcome="failed") == 1
    assert value(samples, loads, model="big", version="1", outcome="ok") is None
    assert value(samples, "modelport_model_load_seconds_count", model="big", version="1") is None
    # a version that failed to load is a model here: its answers are counted under its name
    assert value(
        samples, "modelport_inference_requests_total", model="big", version="", surface="v2", status="503"
    )


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    cuda = SimpleNamespace(
        initialized=True,
        is_initialized=lambda: cuda.initialized,
        device_count=lambda: 2,
        memory_allocated=lambda i: 1000 * (i + 1),
        memory_reserved=lambda i: 4000 * (i + 1),
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    yield cuda


def test_gpu_memory_only_where_cuda_is_in_use(
    fake_cuda: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    families, samples = scrape(httpx.Response(200, content=Metrics().exposition()))
    assert families["modelport_gpu_memory_bytes"].type == "gauge"
    assert value(samples, "modelport_gpu_memory_bytes", device="cuda:1", kind="allocated") == 2000
    assert value(samples, "modelport_gpu_memory_bytes", device="cuda:0", kind="reserved") == 4000
    fake_cuda.initialized = False  # torch imported, CUDA never started: nothing to show, nothing started
    _, samples = scrape(httpx.Response(200, content=Metrics().exposition()))
    assert not [k for k in samples if k[0] == "modelport_gpu_memory_bytes"]
    monkeypatch.delitem(sys.modules, "torch")  # not imported: never imported for this
    _, samples = scrape(httpx.Response(200, content=Metrics().exposition()))
    assert "torch" not in sys.modules and not [k for k in samples if k[0] == "modelport_gpu_memory_bytes"]


# ---- the OpenAI surface ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("transformers")
    pytest.importorskip("sentence_transformers")
    from tests.runtimes import textmodels

    d = tmp_path_factory.mktemp("text")
    lm = textmodels.gpt2_lm(d / "lm" / "model")
    tiny = textmodels.sentence_transformer(
        d / "tiny" / "model", textmodels.bert_classifier(d / "bert" / "model")
    )
    return {
        "writer": textmodels.tar_dir(lm, d / "writer.tar", top=None),
        "tiny": textmodels.tar_dir(tiny, d / "tiny.tar"),
    }


def test_openai_requests_by_surface_and_status(api: TestClient, text_models: dict[str, Path]) -> None:
    assert push(api, "writer", text_models["writer"]).status_code == 201
    assert push(api, "tiny", text_models["tiny"]).status_code == 201
    assert api.post("/v1/embeddings", json={"model": "tiny", "input": ["hello world"]}).status_code == 200
    chat = {"model": "writer", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    assert api.post("/v1/chat/completions", json=chat).status_code == 200
    with api.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as r:
        assert r.status_code == 200 and "".join(r.iter_text()).endswith("data: [DONE]\n\n")
    assert (
        api.post("/v1/embeddings", json={"model": "writer", "input": "hi"}).status_code == 400
    )  # no embedder
    assert api.post("/v1/embeddings", json={"model": "ghost", "input": "x"}).status_code == 404
    assert api.post("/v2/models/tiny/infer", json={"inputs": []}).status_code == 400

    _, samples = scrape(api)
    requests = "modelport_inference_requests_total"
    assert value(samples, requests, model="tiny", version="1", surface="openai", status="200") == 1
    assert value(samples, requests, model="writer", version="1", surface="openai", status="200") == 2
    assert value(samples, requests, model="writer", version="", surface="openai", status="400") == 1
    assert value(samples, requests, model="", version="", surface="openai", status="404") == 1
    assert value(samples, requests, model="tiny", version="", surface="v2", status="400") == 1
    assert "ghost" not in label_values(samples, "model")
    latency = "modelport_inference_request_duration_seconds_count"
    assert value(samples, latency, model="writer", version="1", surface="openai") == 2
    assert value(samples, "modelport_time_to_first_token_seconds_count", model="writer", version="1") == 2
    assert value(samples, "modelport_prompt_tokens_total", model="tiny", version="1")
    assert value(samples, "modelport_queue_wait_seconds_count", model="tiny", version="1") == 1
    assert value(samples, "modelport_generation_sequences", model="writer", version="1", state="running") == 0


def test_workers_add_up_levels_and_retired_versions_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--workers: each process writes its own files; /metrics adds them up, and leaves out the gauges of a
    version whose latest news (in any worker) is its retirement once nothing of it is left anywhere."""
    from prometheus_client import values

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    def worker(pid: int) -> Metrics:
        monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: pid))
        return Metrics()

    def levels(samples: Samples, version: str = "1") -> tuple[float | None, float | None]:
        return (
            value(samples, "modelport_queue_depth", model="m", version=version),
            value(samples, "modelport_inflight_requests", model="m", version=version),
        )

    def scraped() -> Samples:
        return scrape(httpx.Response(200, content=a.exposition()))[1]

    a = worker(1001)
    a_levels = a.meters("m", 1).levels
    assert a.multiprocess and a_levels is not None
    b = worker(1002)
    b_levels = b.meters("m", 1).levels
    assert b_levels is not None
    a_levels(2, 3)
    b_levels(0, 1)
    b.observe(InferenceEvent("m", 1, "v2", 200, 0.01))
    a.observe(InferenceEvent("m", 1, "v2", 200, 0.01))
    samples = scraped()
    assert levels(samples) == (2, 4)
    assert (
        value(
            samples, "modelport_inference_requests_total", model="m", version="1", surface="v2", status="200"
        )
        == 2
    )
    assert not [k for k in samples if k[0].startswith("modelport_internal")]

    time.sleep(0.01)
    a.retired("m", 1)  # a let it go; b still answers one request on it
    assert levels(scraped()) == (0, 1)
    b_levels(0, 0)
    time.sleep(0.01)
    b.retired("m", 1)
    assert levels(scraped()) == (None, None)  # retired everywhere: gone
    time.sleep(0.01)
    a.meters("m", 1)  # loaded again
    assert levels(scraped()) == (0, 0)
