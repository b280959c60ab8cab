from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import push


def test_metrics_count_requests_batches_and_loaded_models(
    api: TestClient, artifacts: dict[str, Path]
) -> None:
    push(api, "iris", artifacts["iris.skops"])
    row = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": [1, 2, 3, 4] * 2}]}
    for _ in range(3):
        assert api.post("/v2/models/iris/infer", json=row).status_code == 200
    assert api.post("/v2/models/iris/versions/9/infer", json=row).status_code == 404
    assert api.get("/metrics", headers={"Authorization": ""}).status_code == 401
    text = api.get("/metrics").text
    assert 'modelport_inference_requests_total{model="iris",status="200",version="1"} 3.0' in text
    assert 'modelport_inference_requests_total{model="",status="404",version=""} 1.0' in text
    assert 'modelport_batch_size_rows_sum{model="iris"} 6.0' in text
    assert "modelport_loaded_versions 1.0" in text
    assert 'modelport_inference_request_duration_seconds_count{model="iris"} 3.0' in text
