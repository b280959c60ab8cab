"""Keras 3 models (.keras) served on the torch backend, and the configs ``vet`` refuses before anything is
stored: Lambda layers, custom (registered) objects and functions that are not Keras' own."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from modelport.errors import LoadError
from modelport.runtimes.base import LoadOptions
from modelport.runtimes.catalog import RuntimeCatalog
from modelport.runtimes.keras import KerasRuntime, import_keras
from modelport.server import Services
from tests.conftest import infer_json as infer
from tests.conftest import push

keras = import_keras()


def functional() -> Any:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4,), name="features")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(hidden))


def two_inputs() -> Any:
    keras.utils.set_random_seed(1)
    a = keras.Input(shape=(2,), name="a")
    b = keras.Input(shape=(3,), name="b", dtype="int32")
    joined = keras.layers.Concatenate()([a, keras.layers.Embedding(5, 2)(b)[:, 0, :]])
    return keras.Model(
        [a, b], [keras.layers.Dense(1, name="score")(joined), keras.layers.Identity(name="same")(a)]
    )


@keras.saving.register_keras_serializable(package="Mine")
class Doubled(keras.layers.Layer):
    def call(self, x: Any) -> Any:
        return x * 2


def double(x: Any) -> Any:
    return x * 2


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keras")
    made = {
        "functional.keras": functional(),
        "sequential.keras": keras.Sequential(
            [keras.Input(shape=(4,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(2)]
        ),
        "two.keras": two_inputs(),
        "lambda.keras": keras.Sequential([keras.Input(shape=(4,)), keras.layers.Lambda(lambda x: x + 1)]),
        "custom.keras": keras.Sequential([keras.Input(shape=(4,)), Doubled()]),
        "function.keras": keras.Sequential(
            [keras.Input(shape=(4,)), keras.layers.Dense(2, activation=double)]
        ),
    }
    for name, model in made.items():
        model.save(d / name)
    return {name: d / name for name in made}


def test_keras_archives_are_recognised_by_keras_alone(models: dict[str, Path]) -> None:
    catalog = RuntimeCatalog.from_entry_points()
    recognised = {name for name, rt in catalog.runtimes.items() if rt.recognise(models["functional.keras"])}
    assert recognised == {"keras"}


@pytest.mark.parametrize("filename", ["model.keras", "model.bin"])  # stored files keep their upload name
def test_functional_model_is_served(api: TestClient, models: dict[str, Path], filename: str) -> None:
    r = push(api, "clf", models["functional.keras"], filename=filename)
    version = r.json()
    assert (version["state"], version["framework"]) == ("ready", "keras"), version
    assert version["signature"] == {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}],
    }
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    served = infer(api, "clf", {"features": x}, {"features": "FP32"})
    expected = keras.saving.load_model(models["functional.keras"]).predict(x, verbose=0)
    np.testing.assert_allclose(served["probs"], expected, atol=1e-5)
    alone = infer(api, "clf", {"features": x[2:3]}, {"features": "FP32"})
    np.testing.assert_allclose(alone["probs"][0], served["probs"][2], atol=1e-6)


def test_settings_keras_does_not_read_are_refused(api: TestClient, models: dict[str, Path]) -> None:
    for params in ({"dtype": "float16"}, {"task": "text-classification"}, {"runtime": '{"pooling": "cls"}'}):
        r = push(api, "strict", models["functional.keras"], **params)
        assert r.status_code == 400, (params, r.text)
    assert push(api, "strict", models["functional.keras"]).json()["state"] == "ready"
    patched = api.patch("/api/v1/models/strict/versions/1/config", json={"dtype": "bfloat16"})
    assert patched.status_code == 400 and "dtype" in patched.text
    assert api.get("/api/v1/models/strict/versions/1/config").json() == {}


def test_sequential_and_multi_input_models(api: TestClient, models: dict[str, Path]) -> None:
    version = push(api, "seq", models["sequential.keras"]).json()
    assert version["state"] == "ready", version
    (spec,) = version["signature"]["inputs"]
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    served = infer(api, "seq", {spec["name"]: x}, {spec["name"]: "FP32"})
    expected = keras.saving.load_model(models["sequential.keras"]).predict(x, verbose=0)
    np.testing.assert_allclose(served[version["signature"]["outputs"][0]["name"]], expected, atol=1e-5)

    version = push(api, "two", models["two.keras"]).json()
    assert version["state"] == "ready", version
    assert [(t["name"], t["datatype"]) for t in version["signature"]["inputs"]] == [
        ("a", "FP32"),
        ("b", "INT32"),
    ]
    assert [t["name"] for t in version["signature"]["outputs"]] == ["score", "same"]
    a = np.random.default_rng(2).normal(size=(4, 2)).astype(np.float32)
    b = np.random.default_rng(3).integers(0, 5, size=(4, 3)).astype(np.int32)
    served = infer(api, "two", {"a": a, "b": b}, {"a": "FP32", "b": "INT32"})
    score, same = keras.saving.load_model(models["two.keras"]).predict([a, b], verbose=0)
    np.testing.assert_allclose(served["score"], score, atol=1e-5)
    np.testing.assert_allclose(served["same"], same, atol=1e-6)


def test_runtime_directly(models: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "m.keras").write_bytes(models["functional.keras"].read_bytes())
    runtime = KerasRuntime()
    runtime.load(tmp_path / "v", LoadOptions())
    assert runtime.memory().host == (4 * 8 + 8 + 8 * 3 + 3) * 4
    x = np.zeros((2, 4), dtype=np.float32)
    x.flags.writeable = False  # as the binary codec gives it
    assert runtime.predict({"features": x}, ["probs"])["probs"].shape == (2, 3)
    runtime.unload()
    with pytest.raises(LoadError, match="dtype"):
        KerasRuntime().load(tmp_path / "v", LoadOptions(dtype="float16"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_the_gpu(models: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "m.keras").write_bytes(models["functional.keras"].read_bytes())
    runtime = KerasRuntime()
    runtime.load(tmp_path / "v", LoadOptions(device="cuda"))
    assert runtime.memory().gpu > 0
    x = np.random.default_rng(4).normal(size=(3, 4)).astype(np.float32)
    expected = keras.saving.load_model(models["functional.keras"]).predict(x, verbose=0)
    np.testing.assert_allclose(runtime.predict({"features": x})["probs"], expected, atol=1e-4)
    runtime.unload()


# ---- refusals: a 4xx, and nothing stored ------------------------------------------------------------------
def refused(api: TestClient, services: Services, model: str, path: Path) -> str:
    r = push(api, model, path)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "unsafe_format", error
    assert api.get(f"/api/v1/models/{model}").status_code == 404  # no model, no version
    assert list(services.repository.store.digests()) == []
    return str(error["message"])


@pytest.mark.parametrize(
    ("artifact", "words"),
    [
        ("lambda.keras", ["Python code (a Lambda layer)", "never runs", "built-in layers"]),
        ("custom.keras", ["'Mine>Doubled'", "custom object"]),
        ("function.keras", ["'double'", "not one of Keras' own"]),
    ],
)
def test_code_in_a_model_is_refused(
    api: TestClient, services: Services, models: dict[str, Path], artifact: str, words: list[str]
) -> None:
    message = refused(api, services, "coded", models[artifact])
    assert all(w in message for w in words), message


def test_classes_from_other_modules_are_refused(
    api: TestClient, services: Services, models: dict[str, Path], tmp_path: Path
) -> None:
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(models["sequential.keras"]) as src, zipfile.ZipFile(evil, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][1]["module"] = "subprocess"
                config["config"]["layers"][1]["class_name"] = "Popen"
                data = json.dumps(config).encode()
            dst.writestr(info, data)
    assert "'Popen' from 'subprocess'" in refused(api, services, "evil", evil)
