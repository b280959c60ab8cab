"""The real tritonclient[http] against a real modelport server on 127.0.0.1."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from modelport.client import Client
from tests import fixtures
from tests.conftest import ADMIN_KEY, AUTH, RunningServer


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, artifacts: dict[str, Path]) -> Iterator[RunningServer]:
    server = RunningServer(tmp_path_factory.mktemp("triton") / "data")
    with Client(server.url, ADMIN_KEY) as client:
        for name, artifact in (("iris", "iris.skops"), ("cancer", "cancer.onnx"), ("wine", "iris.ubj")):
            version = client.push(name, artifacts[artifact])["version"]
            client.promote(name, version)
    yield server
    server.stop()


def auth() -> dict[str, str]:
    return dict(AUTH)  # tritonclient adds its own headers to the dict it is given


def triton_client(server: RunningServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")


def test_liveness_and_metadata(deployed: RunningServer) -> None:
    client = triton_client(deployed)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris", headers=auth())
    meta = client.get_model_metadata("cancer", headers=auth())
    assert meta["name"] == "cancer" and meta["platform"] == "onnx"
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 30]}]
    assert client.get_server_metadata(headers=auth())["name"] == "modelport"
    client.close()


@pytest.mark.parametrize("binary", [True, False])
def test_infer_matches_in_process_predictions(deployed: RunningServer, binary: bool) -> None:
    client = triton_client(deployed)
    x = fixtures.IRIS_X[10:25].astype(np.float64)
    inp = triton.InferInput("input-0", list(x.shape), "FP64")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput("predict", binary_data=binary),
        triton.InferRequestedOutput("predict_proba", binary_data=binary),
    ]
    result = client.infer("iris", [inp], outputs=outputs, request_id="abc", headers=auth())
    model = fixtures.iris_forest()
    assert result.as_numpy("predict").tolist() == model.predict(x).tolist()
    np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(x))
    response = result.get_response()
    assert response["model_version"] == "1" and response["id"] == "abc"

    xf = fixtures.CANCER_X[:20].astype(np.float32)
    onnx_in = triton.InferInput("X", list(xf.shape), "FP32")
    onnx_in.set_data_from_numpy(xf, binary_data=binary)
    result = client.infer("cancer", [onnx_in], headers=auth())  # no outputs named: all, binary by default
    expected = fixtures.cancer_logreg().predict_proba(xf.astype(np.float64))
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-4, atol=1e-5)
    assert (
        result.as_numpy("label").tolist() == fixtures.cancer_logreg().predict(xf.astype(np.float64)).tolist()
    )

    result = client.infer("wine", [inp], model_version="production", headers=auth())
    assert result.as_numpy("predict_proba").shape == (15, 3)
    client.close()


def test_errors_reach_the_client(deployed: RunningServer) -> None:
    client = triton_client(deployed)
    inp = triton.InferInput("input-0", [1, 3], "FP64")
    inp.set_data_from_numpy(np.zeros((1, 3)), binary_data=True)
    with pytest.raises(InferenceServerException, match="shape"):
        client.infer("iris", [inp], headers=auth())
    with pytest.raises(InferenceServerException, match="not found"):
        client.infer("ghost", [inp], headers=auth())
    with pytest.raises(InferenceServerException, match="API key"):
        client.infer("iris", [inp])
    client.close()


def test_dot_dot_paths_on_the_wire(deployed: RunningServer) -> None:
    """Raw requests (no client-side normalisation) with traversal in the path."""
    for path in (
        "/api/v1/models/..",
        "/api/v1/models/../versions",
        "/v2/models/../infer",
        "/api/v1/models/%2e%2e",
    ):
        conn = http.client.HTTPConnection("127.0.0.1", deployed.port, timeout=10)
        conn.request("GET", path, headers=auth())
        response = conn.getresponse()
        body = response.read()
        assert 400 <= response.status < 500, (path, response.status)
        assert body.startswith(b'{"error"'), body
        conn.close()
    assert triton_client(deployed).is_model_ready("iris", headers=auth())


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(deployed: RunningServer, algorithm: str) -> None:
    client = triton_client(deployed)
    x = fixtures.IRIS_X[:4]
    inp = triton.InferInput("input-0", list(x.shape), "FP64")
    inp.set_data_from_numpy(x, binary_data=True)
    result = client.infer("iris", [inp], request_compression_algorithm=algorithm, headers=auth())
    assert result.as_numpy("predict").tolist() == fixtures.iris_forest().predict(x).tolist()
    client.close()
