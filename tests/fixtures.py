"""Models trained here on scikit-learn's bundled datasets, written in each framework's safe format."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

IRIS_X, IRIS_Y = load_iris(return_X_y=True)
CANCER_X, CANCER_Y = load_breast_cancer(return_X_y=True)
DIABETES_X, DIABETES_Y = load_diabetes(return_X_y=True)


@functools.cache
def iris_forest():  # type: ignore[no-untyped-def]
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=10, random_state=0).fit(IRIS_X, IRIS_Y)


@functools.cache
def cancer_logreg():  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(CANCER_X, CANCER_Y)


def write_skops(model: object, path: Path) -> Path:
    import skops.io

    skops.io.dump(model, path)
    return path


def write_onnx(model: object, path: Path, width: int = 30) -> Path:
    from skl2onnx import to_onnx

    onx = to_onnx(model, np.zeros((1, width), dtype=np.float32), options={"zipmap": False}, target_opset=17)
    path.write_bytes(onx.SerializeToString())
    return path


def write_xgboost(path: Path) -> Path:
    import xgboost

    xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(IRIS_X, IRIS_Y).save_model(path)
    return path


def write_lightgbm(path: Path, classifier: bool = False) -> Path:
    import lightgbm

    if classifier:
        model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1, n_jobs=1).fit(CANCER_X, CANCER_Y)
    else:
        model = lightgbm.LGBMRegressor(n_estimators=5, verbose=-1, n_jobs=1).fit(DIABETES_X, DIABETES_Y)
    model.booster_.save_model(path)
    return path


class Canary:
    """A pickle whose loading writes a file: proof that code ran."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.target, "pwned"))


def write_pickle(path: Path, canary: Path) -> Path:
    path.write_bytes(pickle.dumps(Canary(canary)))
    return path
