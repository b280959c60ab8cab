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
    requests = "modelport_inference_requests_total"
    assert f'{requests}{{model="iris",status="200",surface="v2",version="1"}} 3.0' in text
    assert f'{requests}{{model="",status="404",surface="v2",version=""}} 1.0' in text
    assert 'modelport_batch_size_rows_sum{model="iris",version="1"} 6.0' in text
    assert "modelport_loaded_versions 1.0" in text
    assert (
        'modelport_inference_request_duration_seconds_count{model="iris",surface="v2",version="1"} 3.0'
        in text
    )
    assert 'modelport_queue_wait_seconds_count{model="iris",version="1"} 3.0' in text
    assert 'modelport_model_loads_total{model="iris",outcome="ok",version="1"} 1.0' in text
