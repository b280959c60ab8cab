"""The work of a training job, run inside the job's own process (``modelport.jobs.worker``).

Read the dataset, split off the holdout, cross-validate, search, fit, save the model in a format the
runtimes load without pickle, then load it back through modelport's own runtime and score the holdout
with it: the score a job reports is the score of the version it pushes. The alias' current version (the
champion) is scored on the same rows, so that the server can decide on promotion without training again.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import InvalidSpec
from modelport.jobs import estimators
from modelport.jobs.search import NoTrialSucceeded, finite, first_line, search
from modelport.jobs.spec import NUMERIC, JobSpec, default_metric, metrics_for

if TYPE_CHECKING:
    import numpy as np
    import pyarrow

    from modelport.runtimes.base import Runtime

Emit = Callable[[dict[str, Any]], None]
BOOSTERS = frozenset({"xgboost", "lightgbm"})
TABULAR = frozenset({"sklearn", "xgboost", "lightgbm"})  # champions this job can score
ARTIFACTS = {"sklearn": "model.skops", "xgboost": "model.json", "lightgbm": "model.txt"}


class TrainingError(Exception):
    """The job cannot be done with what it was given; ``reason`` is stable ("invalid_data", ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def run(job: dict[str, Any], out_dir: Path, emit: Emit) -> dict[str, Any]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a framework's warning is worth a log line, never a failure
        try:
            return _run(job, out_dir, lambda event: _emit(emit, caught, event))
        except InvalidSpec as exc:
            raise TrainingError("invalid_spec", exc.message) from None
        finally:
            _drain(emit, caught)


def _emit(emit: Emit, caught: list[warnings.WarningMessage], event: dict[str, Any]) -> None:
    _drain(emit, caught)
    emit(event)


def _drain(emit: Emit, caught: list[warnings.WarningMessage]) -> None:
    """The warnings raised since the last event, each distinct one once (with how many times)."""
    counts: dict[str, int] = {}
    for w in caught:
        text = f"{w.category.__name__}: {str(w.message).strip()[:500]}"
        counts[text] = counts.get(text, 0) + 1
    caught.clear()
    for text, n in counts.items():
        emit({"kind": "log", "message": text if n == 1 else f"{text} ({n} times)"})


def _run(job: dict[str, Any], out_dir: Path, emit: Emit) -> dict[str, Any]:
    import numpy as np

    spec = JobSpec.model_validate(job["spec"])
    task, features = job["task"], list(job["features"])
    metric = job.get("metric") or spec.metric or default_metric(task)
    seed, threads = spec.validation.seed, int(job.get("threads") or 1)
    framework = estimators.framework_of(spec.estimator)
    params = estimators.validate(spec.estimator, task, spec.params)
    classify = task == "classification"

    so_far: dict[str, Any] = {}  # every progress event carries the metrics known by then

    def progress(value: float, step: str, **metrics: Any) -> None:
        so_far.update(metrics)
        emit({"kind": "progress", "progress": round(value, 4), "step": step, "metrics": dict(so_far)})

    progress(0.0, "reading the dataset")
    table = _read(job["dataset"])
    x, y = _matrix(table, features), _target(table, spec.target, task)
    classes = np.unique(y) if classify else None
    # boosters are trained on class indices; scikit-learn keeps the labels (its runtime serves them)
    encode = classify and framework in BOOSTERS
    y_fit = np.searchsorted(classes, y) if encode and classes is not None else y
    train, holdout = _split(y, task, spec.validation.holdout, seed)
    cv_folds = spec.validation.folds
    folds = cv_folds or 3
    if cv_folds or spec.search:
        _check_folds(y[train], folds, classify)
    emit({"kind": "log", "message": f"{len(train)} training rows, {len(holdout)} holdout rows"})

    def make(chosen: dict[str, Any]) -> Any:
        return estimators.build(spec.estimator, task, chosen, seed=seed, threads=threads)

    cv = None
    if cv_folds:
        progress(0.05, f"{cv_folds}-fold cross-validation")
        cv = _cross_validate(make(params), x[train], y_fit[train], task, cv_folds, seed)
        progress(0.15, "cross-validated", cv={m: s["mean"] for m, s in cv.items()})
    searched = None
    if spec.search is not None:

        def on_trial(done: int, total: int, best: float | None) -> None:
            progress(0.15 + 0.6 * done / total, f"search trial {done} of {total}", search_best=best)

        try:
            searched = search(
                spec.search, spec.estimator, task, params, metric,
                fit=lambda chosen: _cv_score(make(chosen), x[train], y_fit[train], task, folds, seed, metric),
                seed=seed, on_trial=on_trial,
            )  # fmt: skip
        except NoTrialSucceeded as exc:
            raise TrainingError("invalid_spec", str(exc)) from None
        params = estimators.validate(spec.estimator, task, {**params, **searched["best_params"]})
    progress(0.75, "fitting the model")
    model = make(params)
    model.fit(x[train], y_fit[train])
    progress(0.85, "saving the model")
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = _save(model, framework, out_dir)
    progress(0.9, "scoring the holdout through the runtime")
    runtime = _serve(out_dir, None)
    labels = classes if encode else None
    holdout_metrics = None
    if len(holdout):
        predicted = _labels(runtime.predict({"input-0": x[holdout]}, ["predict"])["predict"], labels)
        holdout_metrics = _metrics(task, y[holdout], predicted)
        so_far["holdout"] = holdout_metrics
    score = holdout_metrics[metric] if holdout_metrics else (cv or {}).get(metric, {}).get("mean")
    champion = None
    if job.get("champion") is not None:
        progress(0.95, "scoring the champion")
        champion = _champion(job["champion"], x[holdout], y[holdout], task, metric)
    from modelport.datasets.profile import profile

    result = {
        "artifact": artifact,
        "framework": framework,
        "estimator": spec.estimator,
        "task": task,
        "params": params,
        "metric": metric,
        "score": score,
        "metrics": {"holdout": holdout_metrics, "cv": cv},
        "challenger": None if holdout_metrics is None else {"score": score, "metrics": holdout_metrics},
        "classes": None if labels is None else labels.tolist(),
        "search": searched,
        "champion": champion,
        "rows": {"train": len(train), "holdout": len(holdout)},
        "profile": profile(table.take(train), features),
        "libraries": _libraries(framework, searched is not None),
    }
    progress(1.0, "done")
    return result


# ---- data ---------------------------------------------------------------------------------------------
def _read(dataset: dict[str, Any]) -> pyarrow.Table:
    if "bundled" in dataset:
        from modelport.datasets.bundled import bundled_table

        return bundled_table(str(dataset["bundled"]))
    from modelport.datasets.reading import read_table

    return read_table(Path(dataset["path"]), str(dataset["format"]))


def _column(table: pyarrow.Table, name: str, what: str) -> Any:
    from modelport.datasets.reading import column_type

    if name not in table.column_names:
        raise TrainingError("invalid_data", f"the dataset has no {what} column {name!r}")
    column = table.column(name)
    if column.null_count:
        raise TrainingError("invalid_data", f"{what} {name!r} has {column.null_count} missing values")
    return column, column_type(column.type)


def _matrix(table: pyarrow.Table, features: list[str]) -> np.ndarray:
    import numpy as np

    x = np.empty((table.num_rows, len(features)), dtype=np.float64)
    for i, name in enumerate(features):
        column, kind = _column(table, name, "feature")
        if kind not in NUMERIC:
            raise TrainingError("invalid_data", f"feature {name!r} is {kind or column.type}, not numeric")
        x[:, i] = column.to_numpy(zero_copy_only=False).astype(np.float64)  # booleans as 0/1
        if not np.isfinite(x[:, i]).all():
            raise TrainingError("invalid_data", f"feature {name!r} holds NaN or infinite values")
    return x


def _target(table: pyarrow.Table, name: str, task: str) -> np.ndarray:
    import numpy as np

    column, kind = _column(table, name, "target")
    values: np.ndarray = column.to_numpy(zero_copy_only=False)
    if task == "regression":
        if kind not in ("integer", "float"):
            raise TrainingError("invalid_data", f"a regression needs a numeric target; {name!r} is {kind}")
        values = values.astype(np.float64)
    elif kind not in ("integer", "float", "boolean", "string"):
        raise TrainingError("invalid_data", f"target {name!r} has the unsupported type {column.type}")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise TrainingError("invalid_data", f"target {name!r} holds NaN or infinite values")
    return values


def _split(y: np.ndarray, task: str, holdout: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    if task == "classification":
        labels, counts = np.unique(y, return_counts=True)
        if len(labels) < 2:
            raise TrainingError("invalid_data", "a classification needs at least two classes in the target")
        if holdout is not None and counts.min() < 2:
            rare = labels[counts.argmin()]
            raise TrainingError(
                "invalid_data",
                f"class {_text(rare)} has only 1 row: a stratified holdout needs at least 2 rows per class",
            )
    if holdout is None:
        return rows, rows[:0]
    try:
        train, test = train_test_split(
            rows, test_size=holdout, random_state=seed, stratify=y if task == "classification" else None
        )
    except ValueError as exc:  # too few rows for the holdout asked for
        raise TrainingError("invalid_data", f"cannot split off the holdout: {first_line(exc)}") from None
    return np.asarray(train), np.asarray(test)


def _check_folds(y: np.ndarray, folds: int, classify: bool) -> None:
    import numpy as np

    if len(y) < folds:
        raise TrainingError(
            "invalid_data", f"{len(y)} training rows are too few for {folds}-fold cross-validation"
        )
    if not classify:
        return
    labels, counts = np.unique(y, return_counts=True)
    if counts.min() < folds:
        rare = labels[counts.argmin()]
        raise TrainingError(
            "invalid_data",
            f"class {_text(rare)} has {counts.min()} training rows: "
            f"{folds}-fold cross-validation needs at least {folds} per class",
        )


# ---- scoring ------------------------------------------------------------------------------------------
SCORERS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "f1": "f1_macro",
    "rmse": "neg_root_mean_squared_error",
    "mae": "neg_mean_absolute_error",
    "r2": "r2",
}
NEGATED = frozenset({"rmse", "mae"})  # scikit-learn's scorers maximise: these come negated


def _folds(task: str, folds: int, seed: int) -> Any:
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = StratifiedKFold if task == "classification" else KFold
    return splitter(n_splits=folds, shuffle=True, random_state=seed)


def _cross_validate(
    model: Any, x: np.ndarray, y: np.ndarray, task: str, folds: int, seed: int
) -> dict[str, dict[str, float | None]]:
    from sklearn.model_selection import cross_validate

    scoring = {m: SCORERS[m] for m in metrics_for(task)}  # type: ignore[arg-type]
    out = cross_validate(model, x, y, cv=_folds(task, folds, seed), scoring=scoring, error_score="raise")
    summary = {}
    for m in scoring:
        scores = -out[f"test_{m}"] if m in NEGATED else out[f"test_{m}"]
        summary[m] = {"mean": finite(scores.mean()), "std": finite(scores.std())}
    return summary


def _cv_score(
    model: Any, x: np.ndarray, y: np.ndarray, task: str, folds: int, seed: int, metric: str
) -> float:
    from sklearn.model_selection import cross_val_score

    scores = cross_val_score(
        model, x, y, cv=_folds(task, folds, seed), scoring=SCORERS[metric], error_score="raise"
    )
    mean = float(scores.mean())
    return -mean if metric in NEGATED else mean


def _metrics(task: str, truth: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    import numpy as np
    from sklearn import metrics

    if task == "regression":
        truth, predicted = truth.astype(np.float64), predicted.astype(np.float64)
        return {
            "rmse": finite(metrics.root_mean_squared_error(truth, predicted)),
            "mae": finite(metrics.mean_absolute_error(truth, predicted)),
            "r2": finite(metrics.r2_score(truth, predicted)) if len(truth) > 1 else None,
        }
    truth, predicted = _comparable(truth), _comparable(predicted)
    if truth.dtype.kind != predicted.dtype.kind:  # numbers on one side, text on the other
        truth, predicted = truth.astype(str), predicted.astype(str)
    return {
        "accuracy": finite(metrics.accuracy_score(truth, predicted)),
        "balanced_accuracy": finite(metrics.balanced_accuracy_score(truth, predicted)),
        "f1": finite(metrics.f1_score(truth, predicted, average="macro", zero_division=0.0)),
    }


def _comparable(labels: np.ndarray) -> np.ndarray:
    """Labels compared numerically when numeric (1 == 1.0 == True), else as text."""
    import numpy as np

    if labels.dtype.kind in "biuf":
        return labels.astype(np.float64)
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in labels], dtype=str)


def _labels(predicted: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    """A booster's class indices as the labels they stand for."""
    import numpy as np

    if classes is None:
        return predicted
    index = np.asarray(predicted, dtype=np.int64)
    if len(index) and (index.min() < 0 or index.max() >= len(classes)):
        raise ValueError(f"it predicts class index {int(index.max())} but has {len(classes)} classes")
    return classes[index]


# ---- artifacts ----------------------------------------------------------------------------------------
def _save(model: Any, framework: str, out_dir: Path) -> str:
    path = out_dir / ARTIFACTS[framework]
    if framework == "sklearn":
        import skops.io

        skops.io.dump(model, path)
    elif framework == "xgboost":
        model.get_booster().save_model(str(path))
    else:
        model.booster_.save_model(str(path))
    return path.name


@functools.cache
def _catalog() -> Any:
    from modelport.runtimes.catalog import RuntimeCatalog

    return RuntimeCatalog.from_entry_points(allow_pickle=False)


def _serve(directory: Path, framework: str | None) -> Runtime:
    """The model in ``directory`` loaded as the server would load it."""
    from modelport.runtimes.base import LoadOptions

    catalog = _catalog()
    runtime = catalog.get(catalog.detect(directory, framework))()
    runtime.vet(directory, LoadOptions())
    runtime.load(directory, LoadOptions())
    return runtime  # type: ignore[no-any-return]


def _champion(
    champion: dict[str, Any], x: np.ndarray, y: np.ndarray, task: str, metric: str
) -> dict[str, Any]:
    """The champion's score on the holdout, or why it has none (never an exception)."""
    number = champion.get("version")
    if "error" in champion:
        return {"version": number, "error": str(champion["error"])}
    try:
        metrics = _score_champion(champion, x, y, task)
    except MemoryError:
        raise
    except Exception as exc:
        reason = exc.message if isinstance(exc, TrainingError) else first_line(exc)
        return {"version": number, "error": reason.replace(str(champion.get("dir")), "<champion>")}
    return {"version": number, "score": metrics[metric], "metrics": metrics}


def _score_champion(champion: dict[str, Any], x: np.ndarray, y: np.ndarray, task: str) -> dict[str, Any]:
    import numpy as np

    def refuse(message: str) -> TrainingError:
        return TrainingError("champion", message)

    framework = champion.get("framework")
    if not len(x):
        raise refuse("the job has no holdout to score it on")
    if framework not in TABULAR:
        raise refuse(f"a {framework} model is not a tabular model this job can score")
    try:
        runtime = _serve(Path(champion["dir"]), framework)
    except Exception as exc:
        raise refuse(f"it could not be loaded: {first_line(exc)}") from None
    signature = runtime.signature()
    inputs, outputs = signature.inputs, {t.name: t for t in signature.outputs}
    if len(inputs) != 1 or len(inputs[0].shape) != 2 or inputs[0].shape[1] not in (-1, x.shape[1]):
        shape = [list(t.shape) for t in inputs]
        raise refuse(f"it takes inputs of shape {shape}; this job has {x.shape[1]} features")
    if "predict" not in outputs:
        raise refuse("it has no predict output")
    numeric = outputs["predict"].datatype == "FP64"
    if task == "regression" and (not numeric or "predict_proba" in outputs):
        raise refuse("it is a classifier; this job is a regression")
    if task == "classification" and numeric and "predict_proba" not in outputs:
        raise refuse("it is a regressor; this job is a classification")
    predicted = runtime.predict({inputs[0].name: x}, ["predict"])["predict"]
    classes = champion.get("classes")
    if task == "classification" and framework in BOOSTERS and classes:
        predicted = _labels(predicted, np.asarray(classes))
    return _metrics(task, y, predicted)


# ---- small helpers ------------------------------------------------------------------------------------
def _libraries(framework: str, searched: bool) -> dict[str, str]:
    names = ["scikit-learn", "numpy", "scipy", "pyarrow"]
    names += ["skops"] if framework == "sklearn" else [framework]
    names += ["optuna"] if searched else []
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _text(value: Any) -> str:
    return repr(value.item() if hasattr(value, "item") else value)
