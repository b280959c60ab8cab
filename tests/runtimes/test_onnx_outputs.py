"""ONNX outputs that are not plain tensors: skl2onnx's ZipMap probabilities are served as a tensor, and
anything else is named in the version's signature with the reason it is not served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from tests import fixtures
from tests.conftest import push


def test_default_skl2onnx_classifier_serves_its_probabilities(api: TestClient, tmp_path: Path) -> None:
    from skl2onnx import to_onnx

    model = fixtures.iris_forest()
    onx = to_onnx(model, np.zeros((1, 4), dtype=np.float32), target_opset=17)  # zipmap on: the default
    path = tmp_path / "iris-zipmap.onnx"
    path.write_bytes(onx.SerializeToString())
    version = push(api, "zipmap", path).json()
    assert version["state"] == "ready", version
    outputs = {o["name"]: o for o in version["signature"]["outputs"]}
    assert outputs["output_probability"] == {
        "name": "output_probability",
        "datatype": "FP32",
        "shape": [-1, -1],
    }
    assert "unserved_outputs" not in version["signature"]

    x = fixtures.IRIS_X[[0, 60, 120]]
    body = {"inputs": [{"name": "X", "shape": [3, 4], "datatype": "FP32", "data": x.reshape(-1).tolist()}]}
    answer = api.post("/v2/models/zipmap/infer", json=body).json()
    got = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}
    np.testing.assert_allclose(
        got["output_probability"], model.predict_proba(x.astype(np.float32)), atol=1e-5
    )
    assert got["output_label"].tolist() == model.predict(x.astype(np.float32)).tolist()


def test_outputs_without_a_tensor_form_are_named_with_the_reason(api: TestClient, tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["y"]),
            helper.make_node("SequenceConstruct", ["x"], ["pieces"]),
        ],
        "mixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2]),
            helper.make_tensor_sequence_value_info("pieces", TensorProto.FLOAT, None),
        ],
    )
    path = tmp_path / "mixed.onnx"
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    version = push(api, "mixed", path).json()
    assert version["state"] == "ready", version
    assert [o["name"] for o in version["signature"]["outputs"]] == ["y"]
    (unserved,) = version["signature"]["unserved_outputs"]
    assert unserved["name"] == "pieces" and "seq(tensor(float))" in unserved["reason"]
