"""The estimator allow-list: parameter schemas, search spaces, what is built."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from modelport.errors import InvalidSpec
from modelport.jobs import estimators
from modelport.jobs.spec import Range


def refused(call: Any, *args: Any) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as info:
        call(*args)
    return info.value


def test_importing_the_allow_list_imports_no_framework() -> None:
    code = (
        "import sys, modelport.jobs.estimators as e; e.catalog(); e.validate('xgboost', 'regression', {});"
        "heavy = ('sklearn', 'xgboost', 'lightgbm', 'optuna', 'pyarrow');"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_validate_returns_only_the_given_params_json_safe() -> None:
    assert estimators.validate("random_forest", "classification", {}) == {}
    checked = estimators.validate(
        "random_forest", "classification", {"n_estimators": 50, "max_features": 1, "max_depth": None}
    )
    assert checked == {"n_estimators": 50, "max_features": 1.0, "max_depth": None}
    assert estimators.validate("mlp", "regression", {"hidden_layer_sizes": [8, 4]}) == {
        "hidden_layer_sizes": [8, 4]
    }


RF, CLS = "random_forest", "classification"


@pytest.mark.parametrize(
    ("estimator", "task", "params", "words"),
    [
        ("svm", CLS, {}, "known: logistic_regression, linear_regression"),
        ("linear_regression", CLS, {}, "does not do classification"),
        ("logistic_regression", "regression", {}, "does not do regression"),
        (RF, CLS, {"n_estimators": 0}, "greater than or equal to 1"),
        (RF, CLS, {"n_estimators": 5000}, "less than or equal to 2000"),
        (RF, CLS, {"n_estimators": "10"}, "valid integer"),
        (RF, CLS, {"bootstrap": 1}, "valid boolean"),
        (RF, CLS, {"max_features": "half"}, "'sqrt', 'log2'"),
        (RF, CLS, {"max_features": 1.5}, "fraction"),
        (RF, CLS, {"criterion": "gini"}, "no parameter 'criterion'; its parameters: n_estimators"),
        (RF, "regression", {"class_weight": "balanced"}, "classification only"),
        ("xgboost", "regression", {"learning_rate": 0}, "greater than 0"),
        ("mlp", CLS, {"hidden_layer_sizes": [0]}, "layers of"),
        ("mlp", CLS, {"activation": "gelu"}, "'relu', 'tanh' or 'logistic'"),
        ("logistic_regression", CLS, {"l1_ratio": 0.5}, "solver 'saga'"),
    ],
)
def test_validate_refuses_naming_the_field(
    estimator: str, task: str, params: dict[str, Any], words: str
) -> None:
    error = refused(estimators.validate, estimator, task, params)
    assert error.field == (f"params.{next(iter(params))}" if params else "estimator")
    assert words in error.message


def test_validate_space() -> None:
    estimators.validate_space(
        "random_forest",
        "classification",
        "grid",
        {"n_estimators": [10, 20], "max_features": ["sqrt", 0.5]},
        4,
    )
    estimators.validate_space(
        "xgboost", "regression", "random", {"learning_rate": Range(low=0.01, high=0.3, log=True)}, 4
    )
    estimators.validate_space(  # ranges arrive as objects when read back from a stored job
        "xgboost", "regression", "random", {"max_depth": {"low": 2, "high": 8}}, 4
    )
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("grid", {"trees": [1]}, "no parameter 'trees'"),
        ("grid", {"n_estimators": [10, 0]}, "greater than or equal to 1"),
        ("grid", {"n_estimators": Range(low=1, high=5)}, "ranges need kind 'random'"),
        ("random", {"bootstrap": Range(low=0, high=1)}, "not numeric"),
        ("random", {"n_estimators": Range(low=1.5, high=9)}, "bounds must be whole"),
        ("random", {"n_estimators": Range(low=1, high=9000)}, "bound 9000 is out of range"),
        ("random", {"max_features": Range(low=0.5, high=2)}, "out of range"),
        ("grid", {"n_estimators": []}, "list of values"),
    ]
    for kind, space, words in cases:
        error = refused(estimators.validate_space, RF, CLS, kind, space, 5)
        assert error.field == f"search.space.{next(iter(space))}"
        assert words in error.message, error.message
    error = refused(
        estimators.validate_space, "random_forest", "regression", "grid", {"class_weight": ["balanced"]}, 5
    )
    assert error.field == "search.space.class_weight"
    assert refused(estimators.validate_space, "nope", "regression", "grid", {}, 5).field == "estimator"


def test_catalog_documents_every_estimator() -> None:
    listed = {e["name"]: e for e in estimators.catalog()}
    assert set(listed) == {
        "logistic_regression", "linear_regression", "random_forest", "gradient_boosting", "xgboost",
        "lightgbm", "mlp",
    }  # fmt: skip
    assert listed["xgboost"]["framework"] == "xgboost"
    assert listed["lightgbm"]["framework"] == "lightgbm"
    assert listed["mlp"]["tasks"] == ["classification", "regression"]
    assert "StandardScaler" in listed["logistic_regression"]["description"]
    for entry in listed.values():
        properties = entry["params"]["properties"]
        assert properties and all(p.get("description") for p in properties.values()), entry["name"]
        assert entry["params"]["additionalProperties"] is False
    assert listed["random_forest"]["params"]["properties"]["n_estimators"]["maximum"] == 2000
    assert estimators.framework_of("gradient_boosting") == "sklearn"


def test_build_as_documented() -> None:
    from lightgbm import LGBMRegressor
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    logistic = estimators.build("logistic_regression", "classification", {"C": 2.0}, seed=3, threads=2)
    assert isinstance(logistic, Pipeline) and [n for n, _ in logistic.steps] == ["scaler", "model"]
    assert isinstance(logistic[0], StandardScaler) and isinstance(logistic[1], LogisticRegression)
    assert (logistic[1].C, logistic[1].random_state) == (2.0, 3)
    mlp = estimators.build("mlp", "classification", {"hidden_layer_sizes": [4, 2]}, seed=3, threads=2)
    assert isinstance(mlp[1], MLPClassifier) and mlp[1].hidden_layer_sizes == (4, 2)
    forest = estimators.build("random_forest", "regression", {}, seed=3, threads=2)
    assert isinstance(forest, RandomForestRegressor) and (forest.random_state, forest.n_jobs) == (3, 2)
    xgb = estimators.build("xgboost", "classification", {"max_depth": 2}, seed=3, threads=2)
    assert isinstance(xgb, XGBClassifier)
    assert (xgb.random_state, xgb.n_jobs, xgb.max_depth) == (3, 2, 2)
    lgbm = estimators.build("lightgbm", "regression", {}, seed=3, threads=2)
    assert isinstance(lgbm, LGBMRegressor)
    assert (lgbm.random_state, lgbm.n_jobs, lgbm.verbose) == (3, 2, -1)
