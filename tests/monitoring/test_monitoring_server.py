"""Monitoring in a real ``modelport serve --workers 2``: the background loops of both workers write
their statistics and logged predictions, the report adds them up, an alert fires once (one audit event,
one webhook to a real local server) though both workers evaluate it, and a restart loses nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from sklearn.datasets import load_iris

from modelport.monitoring.webhook import SIGNATURE_HEADER, verify
from tests.api.test_monitoring_api import Receiver
from tests.conftest import AUTH, RunningServer

IRIS = load_iris()
FAST = {"MODELPORT_STATS_BUCKET_SECONDS": "1", "MODELPORT_ALERT_INTERVAL": "1"}


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def test_two_workers_add_up_and_an_alert_fires_once(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    receiver = Receiver()
    server = RunningServer(tmp_path / "data", extra_env=FAST, args=("--workers", "2"))
    try:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as api:
            r = api.post(
                "/api/v1/models/iris/versions",
                content=artifacts["iris.skops"].read_bytes(),
                params={"filename": "iris.skops"},
            )
            assert r.status_code == 201, r.text
            api.put("/api/v1/models/iris/monitoring/config", json={"sample_rate": 1.0})
            rule = {"kind": "p99", "threshold": 0.0, "window": "1m", "webhook_url": receiver.url,
                    "webhook_secret": "whsec-0123456789abcdef"}  # fmt: skip
            assert api.post("/api/v1/models/iris/alerts", json=rule).status_code == 201
            time.sleep(1.5)  # both workers follow the new sample rate within a second
            for i in range(60):  # new connections: spread over both workers
                body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                                    "data": IRIS.data[i].tolist()}]}  # fmt: skip
                with httpx.Client(base_url=server.url, headers=AUTH) as one:
                    assert one.post("/v2/models/iris/infer", json=body).status_code == 200

            def counted() -> int:
                report = api.get("/api/v1/models/iris/monitoring", params={"window": "5m"}).json()
                return int(report["versions"][0]["requests"] == 60)

            assert wait_for(counted), api.get("/api/v1/models/iris/monitoring").json()

            def logged() -> bool:
                page = api.get("/api/v1/models/iris/predictions", params={"limit": 100}).json()
                return len(page["predictions"]) == 60

            assert wait_for(logged)
            assert wait_for(lambda: len(receiver.received) >= 1)
            time.sleep(2.5)  # more evaluations by both workers: still one event
            assert len(receiver.received) == 1
            headers, body = receiver.received[0]
            assert verify("whsec-0123456789abcdef", body, headers[SIGNATURE_HEADER])
            assert orjson.loads(body)["event"] == "alert.fired"
            audit = api.get("/api/v1/audit", params={"action": "alert.fired"}).json()
            assert len(audit) == 1
        server.stop()
        server = RunningServer(tmp_path / "data", extra_env=FAST)  # a restart keeps it all
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as api:
            report = api.get("/api/v1/models/iris/monitoring", params={"window": "5m"}).json()
            assert report["versions"][0]["requests"] == 60 and report["alerts"][0]["state"] == "firing"
            assert len(api.get("/api/v1/models/iris/predictions").json()["predictions"]) == 60
    finally:
        server.stop()
        receiver.close()
