"""Monitoring through the management API: the prediction log, feedback and live quality, drift against
a reference, the report, and alert rules with signed webhooks delivered to a real local HTTP server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_iris

from modelport.monitoring.webhook import SIGNATURE_HEADER, verify
from modelport.server import Services
from tests.conftest import push

IRIS = load_iris()


def infer(api: TestClient, rows: np.ndarray, request_id: str | None = None) -> Any:
    body = {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.reshape(-1).tolist()}]}  # fmt: skip
    headers = {"X-Request-Id": request_id} if request_id else {}
    r = api.post("/v2/models/iris/infer", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r


def settle(services: Services) -> None:
    """What the monitoring loop does each second, now: logged rows and closed statistics written."""
    services.monitoring.predictions.flush()
    services.monitoring.flush(final=True)


@pytest.fixture
def iris(api: TestClient, artifacts: dict[str, Path]) -> TestClient:
    assert push(api, "iris", artifacts["iris.skops"]).status_code == 201
    return api


def test_prediction_log_is_off_until_set_then_paged_filtered_and_exported(
    iris: TestClient, services: Services
) -> None:
    api = iris
    infer(api, IRIS.data[:1], "before-0")
    assert api.get("/api/v1/models/iris/monitoring/config").json()["sample_rate"] == 0.0
    r = api.put("/api/v1/models/iris/monitoring/config", json={"sample_rate": 1.0})
    assert r.status_code == 200 and r.json()["sample_rate"] == 1.0 and r.json()["updated_by"]
    for i in range(25):
        answer = infer(api, IRIS.data[i : i + 1], f"req-{i}")
        assert answer.headers["x-request-id"] == f"req-{i}"
    settle(services)
    page = api.get("/api/v1/models/iris/predictions", params={"limit": 10}).json()
    assert [p["request_id"] for p in page["predictions"]] == [f"req-{i}" for i in range(24, 14, -1)]
    first = page["predictions"][-1]
    assert first["version"] == 1 and first["inputs"]["input-0"] == [IRIS.data[15].tolist()]
    assert first["outputs"]["predict"] == [int(IRIS.target[15])] and first["latency"] > 0
    seen = [p["request_id"] for p in page["predictions"]]
    while page["next"]:
        page = api.get("/api/v1/models/iris/predictions", params={"limit": 10, "cursor": page["next"]}).json()
        seen += [p["request_id"] for p in page["predictions"]]
    assert sorted(seen) == sorted(f"req-{i}" for i in range(25))  # "before-0" was not sampled
    assert api.get("/api/v1/models/iris/predictions", params={"version": 2}).json()["predictions"] == []
    later = api.get("/api/v1/models/iris/predictions", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert later["predictions"] == []
    lines = api.get("/api/v1/models/iris/predictions/export", params={"format": "jsonl"}).content.splitlines()
    assert len(lines) == 25 and {orjson.loads(line)["request_id"] for line in lines} == set(seen)
    exported = api.get("/api/v1/models/iris/predictions/export", params={"format": "parquet"})
    assert exported.headers["content-type"] == "application/vnd.apache.parquet"
    assert pq.read_table(pa.BufferReader(exported.content)).num_rows == 25
    for path in (services.settings.data_dir / "predictions").rglob("*"):  # no key reaches the log
        if path.is_file():
            assert b"mp_test-admin-key" not in path.read_bytes()
    assert api.put("/api/v1/models/iris/monitoring/config", json={"sample_rate": 1.5}).status_code == 400
    assert api.get("/api/v1/models/nope/predictions").status_code == 404


def test_feedback_joins_predictions_by_request_id_and_accuracy_matches_by_hand(
    iris: TestClient, services: Services
) -> None:
    api = iris
    api.put("/api/v1/models/iris/monitoring/config", json={"sample_rate": 1.0})
    rows = np.random.default_rng(3).choice(len(IRIS.data), 40, replace=False)
    predicted = {}
    for i in rows:
        answer = infer(api, IRIS.data[i : i + 1], f"r{i}")
        predicted[f"r{i}"] = answer.json()["outputs"][0]["data"][0]
    settle(services)
    # the truth for half of them is the real label, for the other half a deliberately wrong one
    truth = {rid: int(IRIS.target[int(rid[1:])]) for rid in predicted}
    for n, rid in enumerate(sorted(truth)):
        if n % 2:
            truth[rid] = (truth[rid] + 1) % 3
    body = [{"request_id": rid, "label": label} for rid, label in truth.items()]
    body.append({"request_id": "never-answered", "label": 1})
    r = api.post("/api/v1/models/iris/feedback", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 41, "matched": 40, "unmatched": ["never-answered"]}
    expected = sum(predicted[rid] == truth[rid] for rid in truth) / len(truth)
    labels = sorted(set(truth.values()) | set(predicted.values()))
    f1s = []
    for c in labels:
        tp = sum(predicted[k] == c and truth[k] == c for k in truth)
        fp = sum(predicted[k] == c and truth[k] != c for k in truth)
        fn = sum(predicted[k] != c and truth[k] == c for k in truth)
        f1s.append(2 * tp / (2 * tp + fp + fn))
    report = api.get("/api/v1/models/iris/monitoring", params={"window": "15m"}).json()
    quality = report["versions"][0]["quality"]
    assert quality["task"] == "classification" and quality["feedback"] == 40
    assert quality["accuracy"] == pytest.approx(expected) and quality["f1"] == pytest.approx(np.mean(f1s))
    bad = [{"request_id": "x", "label": 1, "value": 2.0}]
    assert api.post("/api/v1/models/iris/feedback", json=bad).status_code == 400
    assert (
        api.post("/api/v1/models/iris/feedback", json=[{"request_id": "bad id!", "label": 1}]).status_code
        == 400
    )


def test_report_counts_requests_errors_and_latency_per_version(iris: TestClient, services: Services) -> None:
    api = iris
    for i in range(30):
        infer(api, IRIS.data[i : i + 1])
    wrong = {"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}
    assert api.post("/v2/models/iris/infer", json=wrong).status_code == 400
    settle(services)
    report = api.get("/api/v1/models/iris/monitoring", params={"window": "1h"}).json()
    assert report["window"]["seconds"] == 3600 and report["window"]["step_seconds"] >= 60
    (version,) = report["versions"]
    assert version["version"] == 1 and version["serving"] and version["state"] == "ready"
    assert version["requests"] >= 30  # a refused request counts for its version only when it reached one
    assert version["errors"] == 0 and 0 < version["latency"]["p50"] <= version["latency"]["p99"] < 5
    assert sum(p["requests"] for p in version["series"]) == version["requests"]
    assert version["drift"]["status"] == "no_reference" and report["alerts"] == []
    assert api.get("/api/v1/models/iris/monitoring", params={"window": "forever"}).status_code == 400
    assert api.get("/api/v1/models/iris/monitoring", params={"window": "30d"}).status_code == 400


def test_drift_against_a_dataset_reference_same_and_shifted(iris: TestClient, services: Services) -> None:
    api = iris
    api.put("/api/v1/models/iris/monitoring/config", json={"sample_rate": 1.0})
    r = api.put(
        "/api/v1/models/iris/versions/1/reference", json={"dataset": "sklearn:iris", "target": "target"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "dataset:sklearn:iris" and len(r.json()["features"]) == 4
    rng = np.random.default_rng(0)
    for i in rng.choice(len(IRIS.data), 150):  # the same distribution
        infer(api, IRIS.data[i : i + 1])
    settle(services)
    same = services.monitoring.report("iris", 3600)["versions"][0]["drift"]
    assert same["status"] == "ok" and same["rows"] == 150, same
    assert not any(f["drifted"] for f in same["features"])
    shifted = IRIS.data + np.array([2.0, 0.0, 2.5, 0.0])  # longer sepals and petals
    for i in rng.choice(len(IRIS.data), 300):
        infer(api, shifted[i : i + 1])
    settle(services)
    moved = services.monitoring.report("iris", 3600)["versions"][0]["drift"]
    drifted = {f["name"] for f in moved["features"] if f["drifted"]}
    assert moved["status"] == "drift" and {"sepal length (cm)", "petal length (cm)"} <= drifted, moved
    assert moved["prediction"] is not None and moved["prediction"]["drifted"]
    profile = api.get("/api/v1/models/iris/versions/1/reference").json()
    assert (
        profile["source"] == "dataset:sklearn:iris"
        and "sample" in profile["profile"]["features"]["sepal width (cm)"]
    )


class Receiver:
    """A real HTTP server on 127.0.0.1 that records the webhooks it is sent (failing the first ones
    when asked, to prove retries)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(503)
                else:
                    outer.received.append((dict(self.headers), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=1)
    yield r
    r.close()


def test_accuracy_alert_fires_and_clears_once_with_signed_webhooks(
    iris: TestClient, services: Services, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = iris
    monkeypatch.setattr("modelport.monitoring.webhook.BACKOFF_FIRST", 0.0)  # retry at once in the test
    secret = "whsec-0123456789abcdef"
    rule = {"kind": "accuracy", "threshold": 0.8, "window": "15m", "webhook_url": receiver.url,
            "webhook_secret": secret}  # fmt: skip
    r = api.post("/api/v1/models/iris/alerts", json=rule)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["state"] == "ok" and created["webhook"] and "webhook_secret" not in created
    api.put("/api/v1/models/iris/monitoring/config", json={"sample_rate": 1.0})
    predicted = {}
    for i in range(20):
        predicted[f"a{i}"] = infer(api, IRIS.data[i * 7 : i * 7 + 1], f"a{i}").json()["outputs"][0]["data"][0]
    settle(services)
    wrong = [{"request_id": rid, "label": (label + 1) % 3} for rid, label in predicted.items()]
    api.post("/api/v1/models/iris/feedback", json=wrong)
    services.monitoring.alerting.evaluate()
    services.monitoring.alerting.evaluate()  # a second evaluation changes nothing
    (fired,) = api.get("/api/v1/models/iris/alerts").json()
    assert fired["state"] == "firing" and fired["value"] == 0.0
    services.monitoring.alerting.deliver()  # the receiver answers 503 to the first attempt
    assert receiver.received == []
    services.monitoring.alerting.deliver()
    assert len(receiver.received) == 1
    right = [{"request_id": rid, "label": label} for rid, label in predicted.items()]
    api.post("/api/v1/models/iris/feedback", json=right)
    services.monitoring.alerting.evaluate()
    services.monitoring.alerting.deliver()
    assert api.get("/api/v1/models/iris/alerts").json()[0]["state"] == "ok"
    events = []
    for headers, body in receiver.received:
        assert verify(secret, body, headers[SIGNATURE_HEADER])
        assert not verify("another-secret-000000", body, headers[SIGNATURE_HEADER])
        events.append(orjson.loads(body))
    assert [e["event"] for e in events] == ["alert.fired", "alert.cleared"]
    assert (
        events[0]["model"] == "iris" and events[0]["rule"]["kind"] == "accuracy" and events[1]["value"] == 1.0
    )
    audit = api.get("/api/v1/audit", params={"model": "iris"}).json()
    actions = [e["action"] for e in audit]
    assert actions.count("alert.fired") == 1 and actions.count("alert.cleared") == 1
    report = api.get("/api/v1/models/iris/monitoring").json()
    assert report["alerts"][0]["state"] == "ok"
    assert api.delete(f"/api/v1/models/iris/alerts/{created['id']}").status_code == 204
    assert api.get("/api/v1/models/iris/alerts").json() == []


def test_p99_alert_fires_on_slow_answers_and_bad_rules_are_refused(
    iris: TestClient, services: Services
) -> None:
    api = iris
    r = api.post("/api/v1/models/iris/alerts", json={"kind": "p99", "threshold": 0.0, "window": "1m"})
    assert r.status_code == 201
    for i in range(5):
        infer(api, IRIS.data[i : i + 1])
    settle(services)
    services.monitoring.alerting.evaluate()
    (rule,) = api.get("/api/v1/models/iris/alerts").json()
    assert rule["state"] == "firing" and rule["value"] > 0 and rule["detail"]["requests"] == 5, rule
    for bad in (
        {"kind": "latency", "threshold": 1},
        {"kind": "p99", "threshold": "NaN"},
        {"kind": "p99", "threshold": 1, "window": "1s"},
        {"kind": "p99", "threshold": 1, "webhook_url": "file:///etc/passwd"},
        {"kind": "p99", "threshold": 1, "webhook_secret": "short"},
    ):
        assert api.post("/api/v1/models/iris/alerts", json=bad).status_code == 400, bad


def test_reference_given_at_push_and_a_deleted_model_forgets_its_log(
    api: TestClient, services: Services, artifacts: dict[str, Path]
) -> None:
    refused = push(
        api, "iris", artifacts["iris.skops"], reference_dataset="sklearn:iris", reference_target="nope"
    )
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "reference_target"
    assert api.get("/api/v1/models/iris").status_code == 404  # nothing stored
    missing = push(api, "iris", artifacts["iris.skops"], reference_dataset="no-such-data")
    assert missing.status_code == 404
    r = push(
        api, "iris", artifacts["iris.skops"], reference_dataset="sklearn:iris", reference_target="target"
    )
    assert r.status_code == 201, r.text
    reference = api.get("/api/v1/models/iris/versions/1/reference").json()
    assert reference["source"] == "dataset:sklearn:iris"
    assert set(reference["profile"]["outputs"]["features"]) == {"predict"}
    api.put("/api/v1/models/iris/monitoring/config", json={"sample_rate": 1.0})
    infer(api, IRIS.data[:1])
    settle(services)
    assert (services.settings.data_dir / "predictions" / "iris").is_dir()
    assert api.delete("/api/v1/models/iris").status_code == 204
    assert not (services.settings.data_dir / "predictions" / "iris").exists()
