"""Open Inference Protocol v2 in process: JSON and binary tensors, resolution, repository extension."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import orjson
from fastapi.testclient import TestClient

from tests import fixtures
from tests.conftest import push


def infer_json(
    x: np.ndarray, name: str = "input-0", datatype: str = "FP64", **extra: object
) -> dict[str, object]:
    return {
        "inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.tolist()}],
        **extra,
    }


def test_server_metadata_and_health(api: TestClient) -> None:
    meta = api.get("/v2").json()
    assert meta["name"] == "modelport" and "binary_tensor_data" in meta["extensions"]
    assert api.get("/v2/health/live", headers={"Authorization": ""}).status_code == 200
    assert api.get("/v2/health/ready", headers={"Authorization": ""}).status_code == 200


def test_json_inference_matches_the_model_in_process(api: TestClient, artifacts: dict[str, Path]) -> None:
    push(api, "iris", artifacts["iris.skops"])
    x = fixtures.IRIS_X[:7]
    r = api.post("/v2/models/iris/infer", json=infer_json(x, id="req-42"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "iris" and body["model_version"] == "1" and body["id"] == "req-42"
    out = {o["name"]: o for o in body["outputs"]}
    model = fixtures.iris_forest()
    assert out["predict"]["data"] == model.predict(x).tolist() and out["predict"]["datatype"] == "INT64"
    proba = np.asarray(out["predict_proba"]["data"]).reshape(out["predict_proba"]["shape"])
    np.testing.assert_allclose(proba, model.predict_proba(x))


def test_each_framework_answers_like_its_library(api: TestClient, artifacts: dict[str, Path]) -> None:
    import lightgbm
    import onnxruntime
    import xgboost

    x30 = fixtures.CANCER_X[:5]
    push(api, "onnx", artifacts["cancer.onnx"])
    body = api.post("/v2/models/onnx/infer", json=infer_json(x30.astype(np.float32), "X", "FP32")).json()
    session = onnxruntime.InferenceSession(str(artifacts["cancer.onnx"]), providers=["CPUExecutionProvider"])
    label, proba = session.run(None, {"X": x30.astype(np.float32)})
    out = {o["name"]: o["data"] for o in body["outputs"]}
    assert out["label"] == label.tolist()
    np.testing.assert_allclose(out["probabilities"], proba.reshape(-1), rtol=1e-6)

    push(api, "xgb", artifacts["iris.ubj"])
    booster = xgboost.Booster(model_file=str(artifacts["iris.ubj"]))
    expected = booster.predict(xgboost.DMatrix(fixtures.IRIS_X[:5]))
    body = api.post("/v2/models/xgb/infer", json=infer_json(fixtures.IRIS_X[:5])).json()
    out = {o["name"]: o["data"] for o in body["outputs"]}
    np.testing.assert_allclose(out["predict_proba"], expected.reshape(-1), rtol=1e-6)
    assert out["predict"] == expected.argmax(axis=1).tolist()

    push(api, "lgbm", artifacts["diabetes.txt"])
    reg = lightgbm.Booster(model_file=str(artifacts["diabetes.txt"]))
    body = api.post("/v2/models/lgbm/infer", json=infer_json(fixtures.DIABETES_X[:5])).json()
    np.testing.assert_allclose(body["outputs"][0]["data"], reg.predict(fixtures.DIABETES_X[:5]))


def test_binary_tensors_in_and_out(api: TestClient, artifacts: dict[str, Path]) -> None:
    push(api, "iris", artifacts["iris.skops"])
    x = fixtures.IRIS_X[:3].astype(np.float64)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [3, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "predict_proba", "parameters": {"binary_data": True}}, {"name": "predict"}],
        }
    )
    r = api.post(
        "/v2/models/iris/infer",
        content=header + x.tobytes(),
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    size = int(r.headers["inference-header-content-length"])
    head = orjson.loads(r.content[:size])
    proba_doc, predict_doc = head["outputs"]
    assert proba_doc["name"] == "predict_proba" and "data" not in proba_doc
    assert predict_doc["data"] == fixtures.iris_forest().predict(x).tolist()
    raw = r.content[size:]
    assert len(raw) == proba_doc["parameters"]["binary_data_size"]
    proba = np.frombuffer(raw, dtype="<f8").reshape(proba_doc["shape"])
    np.testing.assert_allclose(proba, fixtures.iris_forest().predict_proba(x))


def test_binary_data_output_for_every_output(api: TestClient, artifacts: dict[str, Path]) -> None:
    push(api, "iris", artifacts["iris.skops"])
    r = api.post(
        "/v2/models/iris/infer", json=infer_json(fixtures.IRIS_X[:2], parameters={"binary_data_output": True})
    )
    size = int(r.headers["inference-header-content-length"])
    head = orjson.loads(r.content[:size])
    assert all("binary_data_size" in o["parameters"] for o in head["outputs"])
    sizes = sum(o["parameters"]["binary_data_size"] for o in head["outputs"])
    assert sizes == len(r.content) - size


def test_outputs_selection(api: TestClient, artifacts: dict[str, Path]) -> None:
    push(api, "iris", artifacts["iris.skops"])
    body = api.post(
        "/v2/models/iris/infer", json=infer_json(fixtures.IRIS_X[:2], outputs=[{"name": "predict"}])
    ).json()
    assert [o["name"] for o in body["outputs"]] == ["predict"]
    bad = api.post("/v2/models/iris/infer", json=infer_json(fixtures.IRIS_X[:2], outputs=[{"name": "nope"}]))
    assert bad.status_code == 400 and "nope" in bad.json()["error"]


def test_resolution_by_number_alias_and_default(api: TestClient, artifacts: dict[str, Path]) -> None:
    push(api, "m", artifacts["iris.skops"])
    push(api, "m", artifacts["iris.json"])
    x = infer_json(fixtures.IRIS_X[:1])
    assert api.post("/v2/models/m/infer", json=x).json()["model_version"] == "2"  # newest ready
    api.put("/api/v1/models/m/aliases/production", json={"version": 1})
    api.put("/api/v1/models/m/aliases/canary", json={"version": 2})
    assert api.post("/v2/models/m/infer", json=x).json()["model_version"] == "1"  # production wins
    assert api.post("/v2/models/m/versions/canary/infer", json=x).json()["model_version"] == "2"
    assert api.post("/v2/models/m/versions/production/infer", json=x).json()["model_version"] == "1"
    assert api.post("/v2/models/m/versions/2/infer", json=x).json()["model_version"] == "2"
    assert api.post("/v2/models/m/versions/7/infer", json=x).status_code == 404
    assert api.post("/v2/models/m/versions/nosuch/infer", json=x).status_code == 404
    api.post("/api/v1/models/m/aliases/production/rollback")  # nothing earlier: 409, stays on 1
    api.put("/api/v1/models/m/aliases/production", json={"version": 2})
    assert api.post("/v2/models/m/infer", json=x).json()["model_version"] == "2"
    api.post("/api/v1/models/m/aliases/production/rollback")
    assert api.post("/v2/models/m/infer", json=x).json()["model_version"] == "1"


def test_metadata_and_readiness(api: TestClient, artifacts: dict[str, Path]) -> None:
    push(api, "onnx", artifacts["cancer.onnx"])
    meta = api.get("/v2/models/onnx").json()
    assert meta["name"] == "onnx" and meta["versions"] == ["1"] and meta["platform"] == "onnx"
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 30]}]
    assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}
    assert api.get("/v2/models/onnx/versions/1").json()["versions"] == ["1"]
    assert api.get("/v2/models/onnx/ready").status_code == 200
    assert api.get("/v2/models/onnx/versions/1/ready").status_code == 200
    assert api.get("/v2/models/nothing/ready").status_code == 404


def test_repository_index_load_unload(api: TestClient, artifacts: dict[str, Path]) -> None:
    push(api, "iris", artifacts["iris.skops"])
    index = api.post("/v2/repository/index").json()
    assert index == [{"name": "iris", "version": "1", "state": "READY"}]
    assert api.post("/v2/repository/models/iris/unload").status_code == 200
    x = infer_json(fixtures.IRIS_X[:1])
    assert api.post("/v2/models/iris/infer", json=x).status_code == 503
    assert api.get("/v2/models/iris/ready").status_code == 503
    assert api.post("/v2/repository/index").json()[0]["state"] == "UNAVAILABLE"
    assert api.post("/v2/repository/models/iris/load").status_code == 200
    assert api.post("/v2/models/iris/infer", json=x).status_code == 200
    assert api.post("/v2/repository/models/ghost/load").status_code == 404


def test_bytes_datatype_round_trip_in_binary_form(api: TestClient) -> None:
    from modelport.protocol.v2 import decode_request, encode_response

    words = [b"alpha", b"", "β".encode()]
    payload = b"".join(struct.pack("<I", len(w)) + w for w in words)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "t",
                    "shape": [3],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(payload)},
                }
            ]
        }
    )
    request = decode_request(header + payload, len(header))
    assert request.inputs["t"].tolist() == words
    request.parameters["binary_data_output"] = True
    body, size = encode_response(model_name="m", model_version=1, request=request, outputs=request.inputs)
    assert size is not None and body[size:] == payload


def test_documented_route_answers_like_the_fast_path(services: object, artifacts: dict[str, Path]) -> None:
    """The FastAPI routes behind InferenceFastPath (for docs, and when it is not installed) agree with it."""
    from modelport.server import build_app
    from tests.conftest import AUTH

    app = build_app(services)  # type: ignore[arg-type]
    with TestClient(app, headers=AUTH) as fast, TestClient(app.app, headers=AUTH) as plain:
        push(fast, "iris", artifacts["iris.skops"])
        body = infer_json(fixtures.IRIS_X[:3], id="same")
        a, b = fast.post("/v2/models/iris/infer", json=body), plain.post("/v2/models/iris/infer", json=body)
        assert (a.status_code, a.json()) == (b.status_code, b.json()) == (200, a.json())
        bad = {"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}
        a, b = fast.post("/v2/models/iris/infer", json=bad), plain.post("/v2/models/iris/infer", json=bad)
        assert (a.status_code, a.json()) == (b.status_code, b.json()) and a.status_code == 400


def test_nan_outputs_are_never_written_as_json(api: TestClient) -> None:
    from tests import fixtures as fx

    api.post("/api/v1/models/nan/versions", content=fx.fake_artifact(width=2))
    big = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1e308, 1.0]}]}
    r = api.post("/v2/models/nan/infer", json=big)  # 2 * 1e308 overflows to inf
    assert r.status_code == 500 and "binary" in r.json()["error"] and "Infinity" not in r.text
    big["parameters"] = {"binary_data_output": True}
    r = api.post("/v2/models/nan/infer", json=big)
    size = int(r.headers["inference-header-content-length"])
    assert r.status_code == 200 and np.isinf(np.frombuffer(r.content[size:], dtype="<f8")[0])
