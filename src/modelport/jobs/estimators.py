"""The estimators a training job may use, each with a documented parameter schema.

Nothing here imports scikit-learn, XGBoost or LightGBM until ``build`` is called: the server checks
requests with this module. A job's model is built exactly as below (``params`` are the job's parameters,
search winners included; ``seed`` is ``validation.seed``; ``threads`` the server's per-job threads), so
the same call reproduces it locally:

====================  ==============  ========================================================================
estimator             task            built as
====================  ==============  ========================================================================
logistic_regression   classification  ``Pipeline([("scaler", StandardScaler()),
                                      ("model", LogisticRegression(random_state=seed, **params))])``
linear_regression     regression      ``LinearRegression(**params)``
random_forest         classification  ``RandomForestClassifier(random_state=seed, n_jobs=threads, **params)``
random_forest         regression      ``RandomForestRegressor(random_state=seed, n_jobs=threads, **params)``
gradient_boosting     classification  ``GradientBoostingClassifier(random_state=seed, **params)``
gradient_boosting     regression      ``GradientBoostingRegressor(random_state=seed, **params)``
xgboost               classification  ``XGBClassifier(random_state=seed, n_jobs=threads, **params)``
xgboost               regression      ``XGBRegressor(random_state=seed, n_jobs=threads, **params)``
lightgbm              classification  ``LGBMClassifier(random_state=seed, n_jobs=threads,
                                      verbose=-1, **params)``
lightgbm              regression      ``LGBMRegressor(random_state=seed, n_jobs=threads,
                                      verbose=-1, **params)``
mlp                   classification  ``Pipeline([("scaler", StandardScaler()),
                                      ("model", MLPClassifier(random_state=seed, **params))])``
mlp                   regression      ``Pipeline([("scaler", StandardScaler()),
                                      ("model", MLPRegressor(random_state=seed, **params))])``
====================  ==============  ========================================================================

Only the parameters a job gives are passed (the others keep the library's defaults, shown in the
schemas); ``hidden_layer_sizes`` is passed as a tuple. XGBoost and LightGBM classifiers are trained on
class indices 0..k-1 (the sorted distinct labels); the job reports the labels as ``classes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelport.errors import InvalidSpec
from modelport.jobs.spec import Range

MaxFeatures = Literal["sqrt", "log2"] | Annotated[float, Field(gt=0, le=1)] | None
MAX_FEATURES_WORDS = "'sqrt', 'log2', a fraction of the features in (0, 1], or null for all of them"


class Params(BaseModel):
    # strict: a string is not a number and 1 is not true; JSON integers are still accepted as floats
    model_config = ConfigDict(extra="forbid", strict=True)


class LogisticRegressionParams(Params):
    C: float = Field(
        1.0, gt=0, le=1e6, description="Inverse regularisation strength, > 0 (smaller: stronger)."
    )
    l1_ratio: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of L1 in the penalty, 0..1 (0: L2 only); above 0 needs solver 'saga'.",
    )
    solver: Literal["lbfgs", "newton-cholesky", "saga"] = Field(
        "lbfgs", description="Optimiser: 'lbfgs', 'newton-cholesky' or 'saga'."
    )
    max_iter: int = Field(100, ge=1, le=100_000, description="Iterations of the solver, 1..100000.")
    tol: float = Field(1e-4, gt=0, le=1, description="Stopping tolerance, > 0.")
    fit_intercept: bool = Field(True, description="Fit an intercept.")
    class_weight: Literal["balanced"] | None = Field(
        None, description="'balanced' weighs classes inversely to their frequency; null: equal weights."
    )


class LinearRegressionParams(Params):
    fit_intercept: bool = Field(True, description="Fit an intercept.")
    positive: bool = Field(False, description="Force the coefficients to be positive.")


class RandomForestParams(Params):
    n_estimators: int = Field(100, ge=1, le=2000, description="Trees in the forest, 1..2000.")
    max_depth: int | None = Field(
        None, ge=1, le=100, description="Depth limit of a tree, 1..100; null: none."
    )
    min_samples_split: int = Field(2, ge=2, le=1000, description="Rows a node needs to be split, 2..1000.")
    min_samples_leaf: int = Field(1, ge=1, le=1000, description="Rows each leaf keeps at least, 1..1000.")
    max_features: MaxFeatures = Field(
        "sqrt",
        description=f"Features tried at each split: {MAX_FEATURES_WORDS} "
        "(default 'sqrt' for classification, 1.0 for regression).",
    )
    bootstrap: bool = Field(True, description="Train each tree on a bootstrap sample of the rows.")
    class_weight: Literal["balanced", "balanced_subsample"] | None = Field(
        None,
        description="Classification only: 'balanced' or 'balanced_subsample' weigh classes inversely to "
        "their frequency; null: equal weights.",
    )


class GradientBoostingParams(Params):
    n_estimators: int = Field(100, ge=1, le=5000, description="Boosting stages, 1..5000.")
    learning_rate: float = Field(0.1, gt=0, le=1, description="Shrinkage of each stage, in (0, 1].")
    max_depth: int | None = Field(3, ge=1, le=100, description="Depth of each tree, 1..100; null: none.")
    subsample: float = Field(1.0, gt=0, le=1, description="Fraction of rows per stage, in (0, 1].")
    min_samples_split: int = Field(2, ge=2, le=1000, description="Rows a node needs to be split, 2..1000.")
    min_samples_leaf: int = Field(1, ge=1, le=1000, description="Rows each leaf keeps at least, 1..1000.")
    max_features: MaxFeatures = Field(
        None, description=f"Features tried at each split: {MAX_FEATURES_WORDS}."
    )


class XGBoostParams(Params):
    n_estimators: int = Field(100, ge=1, le=5000, description="Boosting rounds, 1..5000.")
    max_depth: int = Field(6, ge=1, le=30, description="Depth of each tree, 1..30.")
    learning_rate: float = Field(0.3, gt=0, le=1, description="Shrinkage (eta) of each round, in (0, 1].")
    subsample: float = Field(1.0, gt=0, le=1, description="Fraction of rows per round, in (0, 1].")
    colsample_bytree: float = Field(1.0, gt=0, le=1, description="Fraction of features per tree, in (0, 1].")
    min_child_weight: float = Field(1.0, ge=0, le=1e4, description="Least hessian weight in a child, >= 0.")
    reg_lambda: float = Field(1.0, ge=0, le=1e4, description="L2 regularisation of the weights, >= 0.")
    reg_alpha: float = Field(0.0, ge=0, le=1e4, description="L1 regularisation of the weights, >= 0.")


class LightGBMParams(Params):
    n_estimators: int = Field(100, ge=1, le=5000, description="Boosting rounds, 1..5000.")
    num_leaves: int = Field(31, ge=2, le=4096, description="Leaves per tree, 2..4096.")
    max_depth: int = Field(-1, ge=-1, le=100, description="Depth limit of a tree, 1..100; -1 or 0: none.")
    learning_rate: float = Field(0.1, gt=0, le=1, description="Shrinkage of each round, in (0, 1].")
    min_child_samples: int = Field(
        20, ge=1, le=10_000, description="Rows each leaf keeps at least, 1..10000."
    )
    subsample: float = Field(
        1.0, gt=0, le=1, description="Fraction of rows bagged, in (0, 1]; only used with subsample_freq >= 1."
    )
    subsample_freq: int = Field(0, ge=0, le=100, description="Bag the rows every k rounds, 0..100; 0: never.")
    colsample_bytree: float = Field(1.0, gt=0, le=1, description="Fraction of features per tree, in (0, 1].")
    reg_lambda: float = Field(0.0, ge=0, le=1e4, description="L2 regularisation, >= 0.")


class MLPParams(Params):
    hidden_layer_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        [100], min_length=1, max_length=10, description="Units of each hidden layer: 1..10 layers of 1..4096."
    )
    activation: Literal["relu", "tanh", "logistic"] = Field(
        "relu", description="Activation of the hidden layers: 'relu', 'tanh' or 'logistic'."
    )
    solver: Literal["adam", "lbfgs", "sgd"] = Field(
        "adam", description="Optimiser: 'adam', 'lbfgs' (good for small datasets) or 'sgd'."
    )
    alpha: float = Field(1e-4, ge=0, le=1e3, description="L2 regularisation, >= 0.")
    learning_rate_init: float = Field(
        1e-3, gt=0, le=1, description="Initial step size (adam, sgd), in (0, 1]."
    )
    max_iter: int = Field(200, ge=1, le=100_000, description="Epochs (adam, sgd) or iterations (lbfgs).")
    batch_size: Annotated[int, Field(ge=1, le=100_000)] | Literal["auto"] = Field(
        "auto", description="Rows per minibatch, 1..100000, or 'auto': min(200, rows)."
    )
    early_stopping: bool = Field(
        False, description="Stop when the score on 10% of the training rows stops improving (adam, sgd)."
    )


@dataclass(frozen=True)
class Estimator:
    name: str
    tasks: tuple[str, ...]
    framework: str
    params: type[Params]
    description: str
    classification_only: frozenset[str] = frozenset()


SCALED = "standardised features (StandardScaler in a Pipeline, which makes the solver converge)"
ESTIMATORS: dict[str, Estimator] = {
    e.name: e
    for e in (
        Estimator(
            "logistic_regression", ("classification",), "sklearn", LogisticRegressionParams,
            f"scikit-learn LogisticRegression on {SCALED}.",
        ),
        Estimator(
            "linear_regression", ("regression",), "sklearn", LinearRegressionParams,
            "scikit-learn LinearRegression (ordinary least squares).",
        ),
        Estimator(
            "random_forest", ("classification", "regression"), "sklearn", RandomForestParams,
            "scikit-learn RandomForestClassifier / RandomForestRegressor.", frozenset({"class_weight"}),
        ),
        Estimator(
            "gradient_boosting", ("classification", "regression"), "sklearn", GradientBoostingParams,
            "scikit-learn GradientBoostingClassifier / GradientBoostingRegressor.",
        ),
        Estimator(
            "xgboost", ("classification", "regression"), "xgboost", XGBoostParams,
            "XGBoost XGBClassifier / XGBRegressor, saved as an XGBoost JSON booster.",
        ),
        Estimator(
            "lightgbm", ("classification", "regression"), "lightgbm", LightGBMParams,
            "LightGBM LGBMClassifier / LGBMRegressor, saved as a LightGBM text booster.",
        ),
        Estimator(
            "mlp", ("classification", "regression"), "sklearn", MLPParams,
            f"scikit-learn MLPClassifier / MLPRegressor (a multi-layer perceptron) on {SCALED}.",
        ),
    )
}  # fmt: skip


def _get(estimator: str, task: str) -> Estimator:
    info = ESTIMATORS.get(estimator)
    if info is None:
        raise InvalidSpec(
            f"unknown estimator {estimator!r}; known: {', '.join(ESTIMATORS)}", field="estimator"
        )
    if task not in info.tasks:
        raise InvalidSpec(
            f"{estimator} does not do {task}; it does {' and '.join(info.tasks)}", field="estimator"
        )
    return info


def framework_of(estimator: str) -> str:
    info = ESTIMATORS.get(estimator)
    if info is None:
        raise InvalidSpec(f"unknown estimator {estimator!r}", field="estimator")
    return info.framework


def _describe(error: ValidationError, info: Estimator, where: str) -> InvalidSpec:
    """The first failing parameter, in words: the schema's message, or its description for values that
    match none of a union's alternatives."""
    errors = error.errors()
    first = errors[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    field = f"{where}.{name}" if name else where
    if first["type"] == "extra_forbidden":
        known = ", ".join(info.params.model_fields)
        return InvalidSpec(
            f"{field}: {info.name} has no parameter {name!r}; its parameters: {known}", field=field
        )
    same = [e for e in errors if e["loc"][:1] == first["loc"][:1]]
    if len(same) > 1 or len(first["loc"]) > 1:  # a union or a list item: say what is expected
        description = info.params.model_fields[name].description or ""
        message = f"{first['input']!r} is not valid: {description}"
    else:
        message = first["msg"]
    return InvalidSpec(f"{field}: {message}", field=field)


def _check_task(info: Estimator, task: str, names: list[str], where: str) -> None:
    for name in names:
        if task != "classification" and name in info.classification_only:
            field = f"{where}.{name}"
            raise InvalidSpec(f"{field}: {info.name}'s {name} applies to classification only", field=field)


def _check_combination(info: Estimator, params: dict[str, Any]) -> None:
    l1_part = params.get("l1_ratio", 0) > 0
    if info.name == "logistic_regression" and l1_part and params.get("solver", "lbfgs") != "saga":
        raise InvalidSpec(
            "params.l1_ratio: an L1 part (above 0) needs solver 'saga'", field="params.l1_ratio"
        )


def validate(estimator: str, task: str, params: dict[str, Any]) -> dict[str, Any]:
    """The job's parameters checked against the estimator's schema: only those given, JSON-safe."""
    info = _get(estimator, task)
    if not isinstance(params, dict):
        raise InvalidSpec("params must be an object", field="params")
    try:
        model = info.params.model_validate(params)
    except ValidationError as exc:
        raise _describe(exc, info, "params") from None
    _check_task(info, task, list(params), "params")
    checked = model.model_dump(mode="json", exclude_unset=True)
    _check_combination(info, checked)
    return checked


def numeric_kind(estimator: str, name: str) -> str | None:
    """``"int"`` or ``"float"`` for a parameter that takes numbers (a Range may cover it), else None."""
    schema = ESTIMATORS[estimator].params.model_json_schema()["properties"][name]
    types = {schema.get("type")} | {alt.get("type") for alt in schema.get("anyOf", [])}
    if "number" in types:
        return "float"
    return "int" if "integer" in types else None


def validate_space(estimator: str, task: str, kind: str, space: dict[str, Any], trials: int) -> None:
    """A search space: each name a parameter of the estimator, each listed value and each range bound
    valid for it; ranges only for numeric parameters and only in a random search."""
    info = _get(estimator, task)
    where = "search.space"
    for name, values in space.items():
        field = f"{where}.{name}"
        if name not in info.params.model_fields:
            known = ", ".join(info.params.model_fields)
            raise InvalidSpec(
                f"{field}: {estimator} has no parameter {name!r}; its parameters: {known}", field=field
            )
        _check_task(info, task, [name], where)
        if isinstance(values, dict):
            values = Range.model_validate(values)  # as stored: the job's JSON gives ranges as objects
        if isinstance(values, Range):
            _check_range(info, kind, name, values, field)
            continue
        if not isinstance(values, list) or not values:
            raise InvalidSpec(f"{field}: give a list of values or a range", field=field)
        for value in values:
            try:
                info.params.model_validate({name: value})
            except ValidationError as exc:
                raise _describe(exc, info, where) from None


def _check_range(info: Estimator, kind: str, name: str, bounds: Range, field: str) -> None:
    if kind != "random":
        raise InvalidSpec(
            f"{field}: a grid search takes lists of values; ranges need kind 'random'", field=field
        )
    number = numeric_kind(info.name, name)
    if number is None:
        raise InvalidSpec(f"{field}: {name} is not numeric: list its values instead of a range", field=field)
    for bound in (bounds.low, bounds.high):
        value: float | int = bound
        if number == "int":
            if bound != int(bound):
                raise InvalidSpec(
                    f"{field}: {name} takes integers; the range's bounds must be whole", field=field
                )
            value = int(bound)
        try:
            info.params.model_validate({name: value})
        except ValidationError:
            description = info.params.model_fields[name].description or ""
            raise InvalidSpec(
                f"{field}: bound {bound:g} is out of range: {description}", field=field
            ) from None


def build(estimator: str, task: str, params: dict[str, Any], *, seed: int, threads: int) -> Any:
    """The unfitted estimator, built as the module's table says."""
    info = _get(estimator, task)
    classify = task == "classification"
    kwargs = dict(params)
    if estimator == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return _scaled(LogisticRegression(random_state=seed, **kwargs))
    if estimator == "linear_regression":
        from sklearn.linear_model import LinearRegression

        return LinearRegression(**kwargs)
    if estimator == "random_forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        forest = RandomForestClassifier if classify else RandomForestRegressor
        return forest(random_state=seed, n_jobs=threads, **kwargs)
    if estimator == "gradient_boosting":
        from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

        boosting = GradientBoostingClassifier if classify else GradientBoostingRegressor
        return boosting(random_state=seed, **kwargs)
    if estimator == "xgboost":
        from xgboost import XGBClassifier, XGBRegressor

        return (XGBClassifier if classify else XGBRegressor)(random_state=seed, n_jobs=threads, **kwargs)
    if estimator == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor

        lgbm = LGBMClassifier if classify else LGBMRegressor
        return lgbm(random_state=seed, n_jobs=threads, verbose=-1, **kwargs)
    if estimator == "mlp":
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        if "hidden_layer_sizes" in kwargs:
            kwargs["hidden_layer_sizes"] = tuple(kwargs["hidden_layer_sizes"])
        return _scaled((MLPClassifier if classify else MLPRegressor)(random_state=seed, **kwargs))
    raise AssertionError(f"no builder for {info.name}")


def _scaled(model: Any) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scaler", StandardScaler()), ("model", model)])


def catalog() -> list[dict[str, Any]]:
    """Every estimator with its tasks, framework and parameter schema (JSON Schema)."""
    return [
        {
            "name": info.name,
            "tasks": list(info.tasks),
            "framework": info.framework,
            "description": info.description,
            "params": info.params.model_json_schema(),
        }
        for info in ESTIMATORS.values()
    ]
