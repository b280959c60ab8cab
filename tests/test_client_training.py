"""The SDK's datasets and training jobs: ``Client`` and ``AsyncClient`` against a real server, and the
event stream's reader on its own."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelport import AsyncClient, Client
from modelport.client.training import EventStream, job_spec
from modelport.errors import Conflict, ConnectionFailed, InvalidInput, InvalidSpec, NotFound, RequestTimeout
from tests import fixtures
from tests.conftest import ADMIN_KEY, RunningServer

IRIS: dict[str, Any] = {"dataset": "sklearn:iris", "target": "target", "estimator": "random_forest"}
# runs for minutes unless cancelled: 10 classes x 5000 boosting stages
SLOW: dict[str, Any] = {"dataset": "sklearn:digits", "target": "target", "estimator": "gradient_boosting"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path_factory.mktemp("training-sdk") / "data")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Client]:
    with Client(server.url, ADMIN_KEY) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def trained(client: Client) -> dict[str, Any]:
    """One small iris forest, trained once for the module: the submitted job and its events."""
    job = client.train("iris-trained", **IRIS, params={"n_estimators": 10}, validation={"seed": 3})
    return {"job": job, "final": client.wait_job(job["id"], timeout=120)}


def test_datasets_push_list_show_delete(client: Client, tmp_path: Path) -> None:
    data = tmp_path / "toy.csv"
    data.write_text("size,weight,label\n1,2.5,a\n2,3.5,b\n3,1.0,a\n4,0.5,b\n")
    sent: list[int] = []
    pushed = client.push_dataset("toy", data, progress=sent.append)
    assert sum(sent) == data.stat().st_size
    assert (pushed["dataset"], pushed["version"], pushed["format"], pushed["rows"]) == ("toy", 1, "csv", 4)
    assert [(c["name"], c["type"]) for c in pushed["schema"]] == [
        ("size", "integer"),
        ("weight", "float"),
        ("label", "string"),
    ]
    assert pushed["preview"][0] == {"size": 1, "weight": 2.5, "label": "a"}
    assert client.push_dataset("toy", data)["version"] == 2

    listed = {d["name"]: d for d in client.list_datasets()}
    assert (listed["toy"]["latest_version"], listed["toy"]["rows"]) == (2, 4)
    assert listed["sklearn:iris"]["bundled"] is True
    shown = client.get_dataset("toy")
    assert (shown["versions"], shown["latest"]["version"]) == ([1, 2], 2)
    assert client.get_dataset_version("toy", 1)["sha256"] == pushed["sha256"]
    iris = client.get_dataset("sklearn:iris")
    assert iris["bundled"] and iris["latest"]["rows"] == 150 and iris["latest"]["version"] is None

    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,b\n1,2\n3,4,5\n")
    with pytest.raises(InvalidInput) as refused:
        client.push_dataset("toy", bad)
    assert refused.value.status_code == 400

    client.delete_dataset("toy", 1)
    assert client.get_dataset("toy")["versions"] == [2]
    client.delete_dataset("toy")
    with pytest.raises(NotFound):
        client.get_dataset("toy")
    with pytest.raises(Conflict):
        client.delete_dataset("sklearn:iris")


def test_train_iris_to_a_version_that_serves(client: Client, trained: dict[str, Any]) -> None:
    job, final = trained["job"], trained["final"]
    assert (job["state"], job["model"], job["task"], job["metric"]) == (
        "queued",
        "iris-trained",
        "classification",
        "accuracy",
    )
    assert final["state"] == "succeeded", final["error"]
    assert final["version"] == 1 and final["result"]["metrics"]["holdout"]["accuracy"] > 0.8
    assert client.get_job(job["id"]) == final

    events = list(client.job_events(job["id"]))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "state" and kinds[-1] == "end" and "progress" in kinds
    assert events[-1]["data"] == final
    states = [e["data"]["state"] for e in events if e["event"] == "state"]
    assert states == ["queued", "running", "succeeded"]
    seqs = [e["id"] for e in events[:-1]]
    assert seqs == sorted(seqs)
    # resuming after an event sends only what came after it
    assert [e["id"] for e in client.job_events(job["id"], after=seqs[1])][:-1] == seqs[2:]

    outputs, served = client.infer("iris-trained", {"input-0": fixtures.IRIS_X[:3]}, version=1)
    assert served == "1" and outputs["predict"].tolist() == [0, 0, 0]
    assert [j["id"] for j in client.list_jobs(model="iris-trained")] == [job["id"]]
    assert client.list_jobs(state="queued") == []
    forest = next(e for e in client.list_estimators() if e["name"] == "random_forest")
    assert "n_estimators" in forest["params"]["properties"] and "classification" in forest["tasks"]


def test_a_bad_request_is_invalid_spec_naming_the_field(client: Client) -> None:
    with pytest.raises(InvalidSpec) as bad_param:
        client.train("iris-bad", **IRIS, params={"n_estimators": 0})
    assert (bad_param.value.status_code, bad_param.value.field) == (422, "params.n_estimators")
    with pytest.raises(InvalidSpec) as bad_target:
        client.train("iris-bad", **{**IRIS, "target": "species"})
    assert bad_target.value.field == "target"
    with pytest.raises(InvalidSpec) as bad_validation:
        client.train("iris-bad", **IRIS, validation={"holdout": None})
    assert bad_validation.value.field == "validation"


def test_cancel_a_queued_and_a_running_job(client: Client, trained: dict[str, Any]) -> None:
    running = client.train("digits-slow", **SLOW, params={"n_estimators": 5000})
    queued = client.train("digits-slow", **SLOW, params={"n_estimators": 5000})  # one job runs at a time
    assert client.cancel_job(queued["id"])["state"] == "cancelled"
    with pytest.raises(Conflict):
        client.cancel_job(queued["id"])

    with closing(client.job_events(running["id"])) as events:  # closing it closes the stream
        next(e for e in events if e["event"] == "state" and e["data"]["state"] == "running")
    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        client.wait_job(running["id"], timeout=1.5)
    assert time.monotonic() - started < 5

    assert client.cancel_job(running["id"])["cancel_requested"] is True
    final = client.wait_job(running["id"], timeout=60)
    assert (final["state"], final["version"]) == ("cancelled", None)
    assert [j["state"] for j in client.list_jobs(model="digits-slow")] == ["cancelled", "cancelled"]


async def test_async_client_alike(server: RunningServer, client: Client, trained: dict[str, Any]) -> None:
    job_id = trained["job"]["id"]
    async with AsyncClient(server.url, ADMIN_KEY) as sdk:
        assert await sdk.list_datasets() == client.list_datasets()
        assert (await sdk.get_dataset("sklearn:iris"))["latest"]["rows"] == 150
        assert await sdk.wait_job(job_id, timeout=30) == trained["final"]
        events = [e async for e in sdk.job_events(job_id)]
        assert events == list(client.job_events(job_id))
        assert await sdk.list_jobs(model="iris-trained") == client.list_jobs(model="iris-trained")
        assert await sdk.list_estimators() == client.list_estimators()
        with pytest.raises(InvalidSpec) as bad:
            await sdk.train("iris-bad", **IRIS, params={"max_features": "most"})
        assert bad.value.field == "params.max_features"
        with pytest.raises(NotFound):
            await sdk.get_job(999_999)


# ---- without a server ---------------------------------------------------------------------------
def test_event_stream_reads_server_sent_events() -> None:
    stream = EventStream(after=3)
    lines = [
        ": keep-alive",
        "",
        "id: 4",
        "event: progress",
        'data: {"seq": 4, "at": "2026-01-01T00:00:00Z", "kind": "progress",',
        'data:  "data": {"progress": 0.5, "step": "fitting"}}',
        "",
        "event: end",
        'data: {"id": 7, "state": "succeeded"}',
        "",
    ]
    events = [e for e in map(stream.feed, lines) if e is not None]
    assert events == [
        {
            "event": "progress",
            "id": 4,
            "at": "2026-01-01T00:00:00Z",
            "data": {"progress": 0.5, "step": "fitting"},
        },
        {"event": "end", "id": None, "at": None, "data": {"id": 7, "state": "succeeded"}},
    ]
    assert (stream.after, stream.ended) == (4, True)


def sse(*events: tuple[int | None, str, dict[str, Any]]) -> bytes:
    out = ""
    for seq, kind, data in events:
        out += (f"id: {seq}\n" if seq is not None else "") + f"event: {kind}\n"
        body = data if kind == "end" else {"seq": seq, "at": None, "kind": kind, "data": data}
        out += f"data: {json.dumps(body)}\n\n"
    return out.encode()


def breaking_stream(asked: list[str | None]) -> httpx.MockTransport:
    """Job 1's events, the first connection cut in the middle of an event; job 9 does not exist."""

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params.get("after"))
        if request.url.path.endswith("/9/events"):
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "job 9 not found"}})
        if len(asked) == 1:
            partial = sse((6, "log", {"message": "hi"}))[:-2]
            return httpx.Response(200, content=sse((5, "state", {"state": "running"})) + partial)
        return httpx.Response(200, content=sse((6, "log", {"message": "hi"}), (None, "end", {"id": 1})))

    return httpx.MockTransport(answer)


EXPECTED = [("state", 5, {"state": "running"}), ("log", 6, {"message": "hi"}), ("end", None, {"id": 1})]


async def test_a_stream_that_breaks_is_resumed_after_the_last_event() -> None:
    asked: list[str | None] = []
    with Client("http://mocked", "k", transport=breaking_stream(asked)) as sdk:
        assert [(e["event"], e["id"], e["data"]) for e in sdk.job_events(1)] == EXPECTED
        assert asked == ["0", "5"]  # the half of event 6 sent first was dropped, and sent again
        with pytest.raises(NotFound):
            list(sdk.job_events(9))

    asked.clear()
    async with AsyncClient("http://mocked", "k", transport=breaking_stream(asked)) as aio:
        assert [(e["event"], e["id"], e["data"]) async for e in aio.job_events(1)] == EXPECTED
        assert asked == ["0", "5"]
        with pytest.raises(NotFound):
            await aio.wait_job(9)


def test_a_stream_that_keeps_breaking_is_given_up() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b": keep-alive\n\n")

    with (
        Client("http://mocked", "k", transport=httpx.MockTransport(answer)) as sdk,
        pytest.raises(ConnectionFailed, match="kept breaking"),
    ):
        sdk.wait_job(1)


def test_job_spec_leaves_out_what_is_not_given() -> None:
    assert job_spec("m", "d:2", "y", "mlp") == {
        "model": "m",
        "dataset": "d:2",
        "target": "y",
        "estimator": "mlp",
        "params": {},
    }
    spec = job_spec("m", "d", "y", "mlp", features=("a", "b"), validation={"holdout": None, "folds": 3})
    assert spec["features"] == ["a", "b"]
    assert spec["validation"] == {"holdout": None, "folds": 3}  # None kept: "no holdout", not "default"
