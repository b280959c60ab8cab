"""Each runtime behind the one interface: recognise, load, signature, predict, unload."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelport.errors import InvalidInput, LoadError
from modelport.runtimes.base import LoadOptions
from modelport.runtimes.catalog import RuntimeCatalog
from tests import fixtures


@pytest.fixture(scope="module")
def catalog() -> RuntimeCatalog:
    return RuntimeCatalog.from_entry_points()


def load(catalog: RuntimeCatalog, framework: str, artifact: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    d = tmp_path / framework
    d.mkdir(parents=True)
    shutil.copy(artifact, d / artifact.name)
    runtime = catalog.get(framework)()
    runtime.load(d, LoadOptions())
    return runtime


def test_builtins_register_through_entry_points(catalog: RuntimeCatalog) -> None:
    assert {"sklearn", "onnx", "xgboost", "lightgbm"} <= set(catalog.runtimes)


@pytest.mark.parametrize(
    ("artifact", "framework"),
    [("iris.skops", "sklearn"), ("cancer.onnx", "onnx"), ("iris.json", "xgboost"), ("iris.ubj", "xgboost"),
     ("diabetes.txt", "lightgbm")],
)  # fmt: skip
def test_recognition_is_exclusive(
    catalog: RuntimeCatalog, artifacts: dict[str, Path], artifact: str, framework: str
) -> None:
    recognised = {name for name, rt in catalog.runtimes.items() if rt.recognise(artifacts[artifact])}
    assert recognised == {framework}


def test_sklearn_signature_and_predict(
    catalog: RuntimeCatalog, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    rt = load(catalog, "sklearn", artifacts["cancer.skops"], tmp_path)
    sig = rt.signature().as_dict()
    assert sig["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 30]}]
    assert sig["outputs"][1] == {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]}
    out = rt.predict({"input-0": fixtures.CANCER_X[:4]}, ["predict_proba"])
    assert list(out) == ["predict_proba"]
    np.testing.assert_allclose(
        out["predict_proba"], fixtures.cancer_logreg().predict_proba(fixtures.CANCER_X[:4])
    )
    with pytest.raises(InvalidInput):
        rt.predict({"input-0": fixtures.CANCER_X[:4, :5]})
    rt.unload()


def test_skops_with_foreign_types_is_refused(catalog: RuntimeCatalog, tmp_path: Path) -> None:
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "evil.skops"
    skops.io.dump(FunctionTransformer(func=os.system), path)
    with pytest.raises(LoadError, match=r"posix\.system"):
        load(catalog, "sklearn", path, tmp_path)


def test_lightgbm_classifier_probabilities(
    catalog: RuntimeCatalog, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    import lightgbm

    rt = load(catalog, "lightgbm", artifacts["cancer-lgbm.txt"], tmp_path)
    out = rt.predict({"input-0": fixtures.CANCER_X[:6]})
    expected = lightgbm.Booster(model_file=str(artifacts["cancer-lgbm.txt"])).predict(fixtures.CANCER_X[:6])
    np.testing.assert_allclose(out["predict_proba"][:, 1], expected)
    assert out["predict"].tolist() == (expected > 0.5).astype(int).tolist()


def test_onnx_output_selection(catalog: RuntimeCatalog, artifacts: dict[str, Path], tmp_path: Path) -> None:
    rt = load(catalog, "onnx", artifacts["cancer.onnx"], tmp_path)
    out = rt.predict({"X": fixtures.CANCER_X[:3].astype(np.float32)}, ["label"])
    assert list(out) == ["label"] and out["label"].dtype == np.int64
    with pytest.raises(InvalidInput):
        rt.predict({"X": fixtures.CANCER_X[:3].astype(np.float32)}, ["nope"])


@pytest.mark.parametrize("artifact", ["iris.skops", "cancer.skops"])
def test_labels_from_probabilities_equal_predict(
    catalog: RuntimeCatalog, artifacts: dict[str, Path], tmp_path: Path, artifact: str
) -> None:
    """The one-pass shortcut (labels = argmax of probabilities) must agree with the model's own predict."""
    rt = load(catalog, "sklearn", artifacts[artifact], tmp_path)
    x = fixtures.CANCER_X if artifact == "cancer.skops" else fixtures.IRIS_X
    both = rt.predict({"input-0": x})
    alone = rt.predict({"input-0": x}, ["predict"])
    assert both["predict"].tolist() == alone["predict"].tolist()


def test_forest_fast_path_is_bit_identical(catalog: RuntimeCatalog, tmp_path: Path) -> None:
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = fixtures.CANCER_X, fixtures.CANCER_Y
    for i, model in enumerate(
        [
            RandomForestClassifier(n_estimators=20, random_state=0).fit(x, y),
            make_pipeline(StandardScaler(), ExtraTreesClassifier(n_estimators=20, random_state=0)).fit(x, y),
        ]
    ):
        rt = load(
            catalog, "sklearn", fixtures.write_skops(model, tmp_path / f"m{i}.skops"), tmp_path / str(i)
        )
        out = rt.predict({"input-0": x})
        assert np.array_equal(out["predict_proba"], model.predict_proba(x))
        assert out["predict"].tolist() == model.predict(x).tolist()


def test_onnx_external_data_must_stay_inside_the_artifact(catalog: RuntimeCatalog, tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "weights.bin").write_bytes(np.ones((1, 2), dtype=np.float32).tobytes())
    (good / "model.onnx").write_bytes(fixtures.onnx_with_external_data("weights.bin"))
    rt = catalog.get("onnx")()
    rt.load(good, LoadOptions())
    assert rt.predict({"x": np.ones((1, 1), dtype=np.float32)})["y"].tolist() == [[1.0, 1.0]]

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones((1, 2), dtype=np.float32).tobytes())
    for location in ("../secret.bin", str(secret)):
        bad = tmp_path / f"bad{len(location)}"
        bad.mkdir()
        (bad / "model.onnx").write_bytes(fixtures.onnx_with_external_data(location))
        with pytest.raises(LoadError, match="outside"):
            catalog.get("onnx")().load(bad, LoadOptions())
