"""A version that cannot serve says why, wherever it is asked for."""

from __future__ import annotations

from fastapi.testclient import TestClient

from modelport.registry import VersionState
from modelport.server import Services
from tests import fixtures

ROW = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]}


def test_predicting_on_a_failed_version_gives_its_reason(api: TestClient, services: Services) -> None:
    r = api.post("/api/v1/models/m/versions", content=fixtures.fake_artifact())
    assert r.status_code == 201
    services.registry.models.set_version_state("m", 1, VersionState.FAILED, error="a test batch failed: boom")
    inferred = api.post("/v2/models/m/versions/1/infer", json=ROW)
    ready = api.get("/v2/models/m/versions/1/ready")
    for answer in (inferred, ready):
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "version 1 of 'm' is failed: a test batch failed: boom"
    (entry,) = api.post("/v2/repository/index").json()
    assert entry == {
        "name": "m",
        "version": "1",
        "state": "UNAVAILABLE",
        "reason": "a test batch failed: boom",
    }
