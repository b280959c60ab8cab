"""Training jobs' work (``training.run``), checked through modelport's own runtimes, and the job's
process (``python -m modelport.jobs.worker``)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.datasets.bundled import bundled_table
from modelport.jobs import training
from modelport.jobs.spec import JobSpec
from modelport.jobs.training import TrainingError
from modelport.runtimes.base import LoadOptions
from modelport.runtimes.catalog import RuntimeCatalog

IRIS = [c for c in bundled_table("iris").column_names if c != "target"]
DIABETES = [c for c in bundled_table("diabetes").column_names if c != "target"]
SMALL = {  # a few trees and iterations: every family in well under a second
    "logistic_regression": {},
    "linear_regression": {},
    "random_forest": {"n_estimators": 5, "max_depth": 4},
    "gradient_boosting": {"n_estimators": 5},
    "xgboost": {"n_estimators": 5, "max_depth": 3},
    "lightgbm": {"n_estimators": 5, "num_leaves": 7},
    "mlp": {"hidden_layer_sizes": [8], "max_iter": 30, "learning_rate_init": 0.05},
}


def make_job(
    estimator: str,
    *,
    dataset: dict[str, Any] | None = None,
    features: list[str] = IRIS,
    task: str = "classification",
    target: str = "target",
    champion: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    spec.setdefault("params", SMALL[estimator])
    checked = JobSpec(model="m", dataset="d", target=target, estimator=estimator, **spec)
    return {
        "spec": checked.model_dump(mode="json"),
        "task": task,
        "features": features,
        "dataset": dataset or {"bundled": "iris"},
        "champion": champion,
        "threads": 1,
    }


def train(job: dict[str, Any], out: Path, events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    result = training.run(job, out, (events if events is not None else []).append)
    json.dumps(result, allow_nan=False)  # the worker writes it as strict JSON
    return result


def serve(directory: Path) -> Any:
    catalog = RuntimeCatalog.from_entry_points(allow_pickle=False)
    runtime = catalog.get(catalog.detect(directory, None))()
    runtime.load(directory, LoadOptions())
    return runtime


def iris_split(seed: int, holdout: float) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split

    table = bundled_table("iris")
    x = np.column_stack([table.column(c).to_numpy() for c in IRIS]).astype(np.float64)
    y = table.column("target").to_numpy()
    return tuple(train_test_split(x, y, test_size=holdout, random_state=seed, stratify=y))


@pytest.fixture(scope="module")
def pets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CSV with string labels and a boolean feature."""
    rng = np.random.default_rng(0)
    a, b, flag = rng.normal(size=150), rng.normal(size=150), rng.random(150) > 0.5
    label = np.where(a + 0.5 * b + 0.4 * flag > 0.3, "dog", np.where(a < -0.5, "bird", "cat"))
    path = tmp_path_factory.mktemp("pets") / "pets.csv"
    lines = [f"{a[i]:.5f},{b[i]:.5f},{str(flag[i]).lower()},{label[i]}" for i in range(150)]
    path.write_text("a,b,flag,label\n" + "\n".join(lines) + "\n")
    return {
        "dataset": {"path": str(path), "format": "csv"},
        "features": ["a", "b", "flag"],
        "target": "label",
    }


def test_iris_forest_serves_exactly_what_scikit_learn_trains(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    params = {"n_estimators": 12, "max_depth": 4, "min_samples_leaf": 2}
    events: list[dict[str, Any]] = []
    job = make_job("random_forest", params=params, validation={"holdout": 0.3, "seed": 7})
    result = train(job, tmp_path, events)
    assert (result["artifact"], result["framework"], result["classes"]) == ("model.skops", "sklearn", None)
    assert result["rows"] == {"train": 105, "holdout": 45}
    assert result["params"] == params
    x_train, x_test, y_train, y_test = iris_split(7, 0.3)
    local = RandomForestClassifier(random_state=7, n_jobs=1, **params).fit(x_train, y_train)
    served = serve(tmp_path).predict({"input-0": x_test})
    assert np.array_equal(served["predict"], local.predict(x_test))
    assert np.array_equal(served["predict_proba"], local.predict_proba(x_test))
    assert (
        result["score"]
        == result["metrics"]["holdout"]["accuracy"]
        == np.mean(local.predict(x_test) == y_test)
    )
    assert set(result["metrics"]["holdout"]) == {"accuracy", "balanced_accuracy", "f1"}
    assert result["metrics"]["cv"] is None and result["search"] is None and result["champion"] is None
    assert result["challenger"] == {"score": result["score"], "metrics": result["metrics"]["holdout"]}
    assert set(result["profile"]["features"]) == set(IRIS) and result["profile"]["rows"] == 105
    assert {"scikit-learn", "numpy", "skops"} <= set(result["libraries"])
    progress = [e for e in events if e["kind"] == "progress"]
    assert progress[0]["progress"] == 0.0 and progress[-1]["progress"] == 1.0
    assert progress[-1]["metrics"]["holdout"] == result["metrics"]["holdout"]
    assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress)


@pytest.mark.parametrize("estimator", ["random_forest", "xgboost", "lightgbm"])
def test_string_labels_from_a_csv(tmp_path: Path, pets: dict[str, Any], estimator: str) -> None:
    result = train(make_job(estimator, **pets), tmp_path)
    served = serve(tmp_path).predict({"input-0": np.array([[2.0, 1.0, 1.0], [-2.0, 0.0, 0.0]])})["predict"]
    if estimator == "random_forest":
        assert result["classes"] is None
        assert list(served) == ["dog", "bird"]  # scikit-learn keeps the labels
    else:
        assert result["classes"] == ["bird", "cat", "dog"]  # boosters answer indices into these
        assert [result["classes"][i] for i in served] == ["dog", "bird"]
    assert result["score"] > 0.7


ONE_TASK = {"logistic_regression": "classification", "linear_regression": "regression"}
ALL = [(e, t) for e in SMALL for t in ("classification", "regression") if ONE_TASK.get(e, t) == t]


@pytest.mark.parametrize(("estimator", "task"), ALL)
def test_every_estimator_trains_and_serves(tmp_path: Path, estimator: str, task: str) -> None:
    events: list[dict[str, Any]] = []
    if task == "classification":
        job = make_job(estimator, validation={"holdout": 0.25})
    else:
        job = make_job(estimator, task=task, dataset={"bundled": "diabetes"}, features=DIABETES)
    result = train(job, tmp_path, events)
    assert result["framework"] == {"xgboost": "xgboost", "lightgbm": "lightgbm"}.get(estimator, "sklearn")
    assert (tmp_path / result["artifact"]).is_file() and len(list(tmp_path.iterdir())) == 1
    runtime = serve(tmp_path)
    width = len(job["features"])
    assert runtime.signature().inputs[0].shape == (-1, width)
    out = runtime.predict({"input-0": np.zeros((3, width))})
    assert out["predict"].shape == (3,)
    metric = "accuracy" if task == "classification" else "rmse"
    assert result["metric"] == metric and math.isfinite(result["score"])
    if task == "classification":
        assert result["score"] > 0.6
    if estimator == "mlp":  # 30 iterations do not converge: said in the job's log, not raised
        assert any("ConvergenceWarning" in e["message"] for e in events if e["kind"] == "log")


def test_grid_search_respects_the_budget_and_is_deterministic(tmp_path: Path) -> None:
    space = {"n_estimators": [3, 6], "max_depth": [2, 3, None]}
    job = make_job(
        "random_forest", params={"min_samples_leaf": 2}, search={"kind": "grid", "space": space, "trials": 4}
    )
    first = train(job, tmp_path / "a")
    second = train(job, tmp_path / "b")
    assert first["search"] == second["search"]
    search = first["search"]
    assert search["kind"] == "grid" and len(search["trials"]) == 4
    tried = [(t["params"]["n_estimators"], t["params"]["max_depth"]) for t in search["trials"]]
    assert len(set(tried)) == 4  # distinct grid points
    assert first["params"] == {"min_samples_leaf": 2, **search["best_params"]}
    assert search["best_score"] == max(t["score"] for t in search["trials"])
    whole = make_job(
        "random_forest", search={"kind": "grid", "space": {"n_estimators": [2, 3]}, "trials": 50}
    )
    assert len(train(whole, tmp_path / "c")["search"]["trials"]) == 2  # the grid is smaller than the budget


def test_random_search_with_ranges(tmp_path: Path) -> None:
    space = {
        "n_estimators": {"low": 2, "high": 8},
        "learning_rate": {"low": 0.01, "high": 0.5, "log": True},
        "max_depth": [2, 3],
    }
    job = make_job(
        "xgboost", task="regression", dataset={"bundled": "diabetes"}, features=DIABETES,
        params={}, search={"kind": "random", "space": space, "trials": 5}, validation={"seed": 3},
    )  # fmt: skip
    first = train(job, tmp_path / "a")
    assert first["search"] == train(job, tmp_path / "b")["search"]
    trials = first["search"]["trials"]
    assert len(trials) == 5
    for trial in trials:
        assert isinstance(trial["params"]["n_estimators"], int) and 2 <= trial["params"]["n_estimators"] <= 8
        assert 0.01 <= trial["params"]["learning_rate"] <= 0.5 and trial["params"]["max_depth"] in (2, 3)
    assert first["search"]["best_score"] == min(t["score"] for t in trials)  # rmse: lower is better
    assert first["params"] == first["search"]["best_params"]
    other = train(
        {**job, "spec": {**job["spec"], "validation": {**job["spec"]["validation"], "seed": 4}}},
        tmp_path / "c",
    )
    assert other["search"]["trials"] != trials


def test_search_over_list_valued_params_and_failing_trials(tmp_path: Path) -> None:
    space = {"hidden_layer_sizes": [[4], [6, 3]], "alpha": [1e-4, 1e-2]}
    result = train(make_job("mlp", search={"kind": "grid", "space": space, "trials": 4}), tmp_path / "a")
    assert {tuple(t["params"]["hidden_layer_sizes"]) for t in result["search"]["trials"]} == {(4,), (6, 3)}
    assert result["params"]["hidden_layer_sizes"] in ([4], [6, 3])
    space = {"l1_ratio": [0.0, 0.5]}  # 0.5 needs solver "saga": that trial fails, the other wins
    result = train(make_job("logistic_regression", search={"kind": "grid", "space": space}), tmp_path / "b")
    failed = [t for t in result["search"]["trials"] if t["score"] is None]
    assert len(failed) == 1 and "saga" in failed[0]["error"]
    assert result["params"] == {"l1_ratio": 0.0}


def test_k_fold_metrics(tmp_path: Path) -> None:
    result = train(make_job("gradient_boosting", validation={"holdout": None, "folds": 4}), tmp_path / "a")
    cv = result["metrics"]["cv"]
    assert set(cv) == {"accuracy", "balanced_accuracy", "f1"}
    assert all(0 <= cv[m]["mean"] <= 1 and cv[m]["std"] >= 0 for m in cv)
    assert result["metrics"]["holdout"] is None and result["score"] == cv["accuracy"]["mean"]
    assert result["rows"] == {"train": 150, "holdout": 0}
    job = make_job(
        "lightgbm", task="regression", dataset={"bundled": "diabetes"}, features=DIABETES,
        validation={"holdout": 0.2, "folds": 3}, metric="mae",
    )  # fmt: skip
    job["metric"] = "mae"
    result = train(job, tmp_path / "b")
    assert set(result["metrics"]["cv"]) == set(result["metrics"]["holdout"]) == {"rmse", "mae", "r2"}
    assert result["metric"] == "mae" and result["score"] == result["metrics"]["holdout"]["mae"]
    assert result["metrics"]["cv"]["rmse"]["mean"] > 0


def test_champion_scored_on_the_same_holdout(tmp_path: Path, pets: dict[str, Any]) -> None:
    weak = train(make_job("random_forest", params={"n_estimators": 1, "max_depth": 1}), tmp_path / "weak")
    strong = train(make_job("random_forest"), tmp_path / "strong")
    assert weak["score"] < strong["score"]

    def champion(name: str, version: int, framework: str = "sklearn", **more: Any) -> dict[str, Any]:
        return {
            "dir": str(tmp_path / name),
            "framework": framework,
            "version": version,
            "classes": None,
            **more,
        }

    against_weak = train(make_job("random_forest", champion=champion("weak", 3)), tmp_path / "c1")
    assert against_weak["champion"] == {
        "version": 3,
        "score": weak["score"],
        "metrics": weak["metrics"]["holdout"],
    }
    assert against_weak["score"] == strong["score"] > against_weak["champion"]["score"]
    params = {"n_estimators": 1, "max_depth": 1}
    against_strong = train(
        make_job("random_forest", params=params, champion=champion("strong", 4)), tmp_path / "c2"
    )
    assert against_strong["champion"]["score"] == strong["score"] > against_strong["score"]
    # a booster champion answers class indices: mapped through its classes before scoring
    booster = train(make_job("xgboost", **pets), tmp_path / "xgb")
    mapped = champion("xgb", 5, "xgboost", classes=booster["classes"])
    result = train(make_job("random_forest", champion=mapped, **pets), tmp_path / "c3")
    assert result["champion"]["score"] == booster["score"]


def test_a_champion_that_cannot_be_scored_gives_an_error(tmp_path: Path) -> None:
    wine = train(
        make_job("random_forest", dataset={"bundled": "wine"}, features=_features("wine")), tmp_path / "wine"
    )
    assert wine["score"] > 0.5
    train(make_job("linear_regression", task="regression"), tmp_path / "regressor")
    cases = {
        "wine": ("sklearn", "takes inputs of shape [[-1, 13]]; this job has 4 features"),
        "regressor": ("sklearn", "it is a regressor"),
        "missing": ("sklearn", "could not be loaded"),
        "onnx": ("onnx", "not a tabular model"),
    }
    for version, (name, (framework, words)) in enumerate(cases.items(), start=1):
        given = {"dir": str(tmp_path / name), "framework": framework, "version": version, "classes": None}
        result = train(make_job("random_forest", champion=given), tmp_path / f"out-{name}")
        assert result["champion"]["version"] == version and words in result["champion"]["error"], result[
            "champion"
        ]
        assert str(tmp_path) not in result["champion"]["error"]
    passed_on = train(
        make_job("random_forest", champion={"version": 9, "error": "version 9 is failed"}), tmp_path / "x"
    )
    assert passed_on["champion"] == {"version": 9, "error": "version 9 is failed"}


def test_bad_data_is_a_training_error(tmp_path: Path, pets: dict[str, Any]) -> None:
    with pytest.raises(TrainingError) as info:
        train(make_job("random_forest", features=[*IRIS, "petal colour"]), tmp_path / "a")
    assert (info.value.reason, info.value.message) == (
        "invalid_data",
        "the dataset has no feature column 'petal colour'",
    )
    lonely = tmp_path / "lonely.csv"
    lonely.write_text("x,y\n" + "".join(f"{i},{'a' if i < 10 else 'b'}\n" for i in range(20)) + "99,c\n")
    job = make_job(
        "random_forest", dataset={"path": str(lonely), "format": "csv"}, features=["x"], target="y"
    )
    with pytest.raises(TrainingError, match="class 'c' has only 1 row") as info:
        train(job, tmp_path / "b")
    assert info.value.reason == "invalid_data"
    with pytest.raises(TrainingError, match="feature 'label' is string, not numeric"):
        train(
            make_job("random_forest", **{**pets, "features": ["a", "label"], "target": "flag"}),
            tmp_path / "c",
        )


def run_worker(workdir: Path, job: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    workdir.mkdir()
    limits = {"memory_bytes": 4 << 30, "cpu_seconds": 120, "parent_pid": os.getpid()}
    (workdir / "job.json").write_text(json.dumps({**job, "limits": limits}))
    return subprocess.run(
        [sys.executable, "-m", "modelport.jobs.worker", str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_worker_process(tmp_path: Path) -> None:
    done = run_worker(tmp_path / "ok", make_job("lightgbm", params={"n_estimators": 3}))
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]  # nothing but JSON lines
    assert events[-1] == {
        "kind": "progress",
        "progress": 1.0,
        "step": "done",
        "metrics": events[-1]["metrics"],
    }
    result = json.loads((tmp_path / "ok" / "result.json").read_text())
    assert result["artifact"] == "model.txt" and (tmp_path / "ok" / "out" / "model.txt").is_file()
    assert serve(tmp_path / "ok" / "out").predict({"input-0": np.zeros((1, 4))})["predict"].shape == (1,)
    assert not (tmp_path / "ok" / "error.json").exists()

    failed = run_worker(tmp_path / "bad", make_job("random_forest", features=["sepal length (cm)", "nope"]))
    assert failed.returncode == 1
    assert json.loads((tmp_path / "bad" / "error.json").read_text()) == {
        "reason": "invalid_data",
        "message": "the dataset has no feature column 'nope'",
    }
    assert not (tmp_path / "bad" / "result.json").exists()


def _features(name: str) -> list[str]:
    return [c for c in bundled_table(name).column_names if c != "target"]
