"""Training through the API, end to end over HTTP: datasets in, served versions out, with lineage,
champion/challenger, search budgets, cancellation and the SSE progress stream."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelport.server import Services, build_app
from tests.conftest import AUTH, make_services

FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Services]]:
    services = make_services(tmp_path_factory.mktemp("training") / "data", max_jobs=2)
    with TestClient(build_app(services), headers=AUTH, raise_server_exceptions=False) as api:
        yield api, services
    services.close()


@pytest.fixture
def api(world: tuple[TestClient, Services]) -> TestClient:
    return world[0]


def submit(api: TestClient, **spec: Any) -> dict[str, Any]:
    r = api.post("/api/v1/jobs", json=spec)
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


def wait(
    api: TestClient, job_id: int, states: tuple[str, ...] = FINAL, timeout: float = 180
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s: {job}")


def infer(api: TestClient, model: str, version: int, rows: np.ndarray) -> list[Any]:
    body = {
        "inputs": [
            {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}
        ],
        "outputs": [{"name": "predict"}],
    }
    r = api.post(f"/v2/models/{model}/versions/{version}/infer", json=body)
    assert r.status_code == 200, r.text
    return r.json()["outputs"][0]["data"]  # type: ignore[no-any-return]


def test_iris_job_serves_what_a_local_model_predicts(api: TestClient) -> None:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    params = {"n_estimators": 15, "max_depth": 4}
    job = submit(
        api, model="flowers", dataset="sklearn:iris", target="target", estimator="random_forest",
        params=params, validation={"holdout": 0.25, "seed": 7},
    )  # fmt: skip
    assert job["state"] in ("queued", "running") and job["task"] == "classification"
    job = wait(api, job["id"])
    assert job["state"] == "succeeded", job
    X, y = load_iris(return_X_y=True)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=7, stratify=y)
    local = RandomForestClassifier(random_state=7, n_jobs=1, **params).fit(X_train, y_train)
    assert infer(api, "flowers", job["version"], X) == local.predict(X).tolist()
    version = api.get(f"/api/v1/models/flowers/versions/{job['version']}").json()
    assert version["state"] == "ready"
    lineage = version["metadata"]["lineage"]
    assert lineage["job"] == job["id"] and lineage["dataset"]["name"] == "sklearn:iris"
    assert lineage["estimator"] == "random_forest" and lineage["params"] == params
    assert lineage["validation"] == {"holdout": 0.25, "folds": None, "seed": 7}
    assert 0.8 < lineage["metrics"]["holdout"]["accuracy"] <= 1.0
    assert "scikit-learn" in lineage["libraries"] and lineage["started_by"] == "admin"
    assert set(version["metadata"]["profile"]["features"]) == set(lineage["features"])
    assert job["result"]["version"] == job["version"] and job["progress"] == 1.0
    events = api.get(f"/api/v1/jobs/{job['id']}/events")
    assert events.headers["content-type"].startswith("text/event-stream")
    kinds = [line.removeprefix("event: ") for line in events.text.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "state" and "progress" in kinds and kinds[-1] == "end"
    resumed = api.get(f"/api/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "2"}).text
    assert "id: 1\n" not in resumed and "id: 2\n" not in resumed and "event: end" in resumed


def test_a_csv_with_text_labels_trains_and_serves_them(api: TestClient) -> None:
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(200, 3))
    labels = np.where(rows[:, 0] + rows[:, 1] > 0, "spam", "ham")
    csv = "x1,x2,x3,kind\n" + "".join(f"{a},{b},{c},{k}\n" for (a, b, c), k in zip(rows, labels, strict=True))
    pushed = api.post("/api/v1/datasets/mail/versions", content=csv.encode())
    assert pushed.status_code == 201, pushed.text
    info = pushed.json()
    assert info["version"] == 1 and info["rows"] == 200 and info["columns"] == 4 and info["format"] == "csv"
    assert [c["type"] for c in info["schema"]] == ["float", "float", "float", "string"]
    assert len(info["preview"]) > 0 and info["preview"][0]["kind"] in ("spam", "ham")
    job = wait(
        api, submit(api, model="mail", dataset="mail", target="kind", estimator="logistic_regression")["id"]
    )
    assert job["state"] == "succeeded", job
    assert job["dataset"] == "mail:1"
    served = infer(api, "mail", job["version"], rows[:20])
    assert set(served) <= {"spam", "ham"} and np.mean(np.array(served) == labels[:20]) > 0.8
    # the dataset is in the version's lineage: it cannot be deleted while that version exists
    refused = api.delete("/api/v1/datasets/mail")
    assert refused.status_code == 409 and str(job["id"]) in refused.json()["error"]["message"]
    assert api.delete(f"/api/v1/models/mail/versions/{job['version']}").status_code == 204
    assert api.delete("/api/v1/datasets/mail/versions/1").status_code == 204
    assert api.get("/api/v1/datasets/mail").json()["versions"] == []


def test_champion_challenger_moves_the_alias_only_for_a_better_model(api: TestClient) -> None:
    common = {
        "model": "wine",
        "dataset": "sklearn:wine",
        "target": "target",
        "validation": {"holdout": 0.3, "seed": 1},
    }
    weak = {"estimator": "random_forest", "params": {"n_estimators": 1, "max_depth": 1}}
    strong = {"estimator": "random_forest", "params": {"n_estimators": 40}}
    first = wait(api, submit(api, **common, **weak, promote={"alias": "production"})["id"])
    assert first["state"] == "succeeded", first
    assert first["result"]["decision"]["promoted"] is True  # no champion yet
    better = wait(
        api, submit(api, **common, **strong, promote={"alias": "production", "min_improvement": 0.05})["id"]
    )
    decision = better["result"]["decision"]
    assert decision["promoted"] is True, decision
    assert decision["champion"]["version"] == first["version"]
    assert decision["challenger"]["score"] >= decision["champion"]["score"] + 0.05
    worse = wait(api, submit(api, **common, **weak, promote={"alias": "production"})["id"])
    decision = worse["result"]["decision"]
    assert worse["state"] == "succeeded" and decision["promoted"] is False, decision
    assert decision["champion"]["version"] == better["version"]
    assert decision["challenger"]["score"] < decision["champion"]["score"]
    aliases = api.get("/api/v1/models/wine").json()["aliases"]
    assert [(a["alias"], a["version"]) for a in aliases] == [("production", better["version"])]
    entries = api.get("/api/v1/audit", params={"action": "job.promote"}).json()
    decisions = [e for e in entries if e["action"] == "job.promote"]
    assert [e["result"] for e in decisions][-3:] in (["ok", "ok", "kept"], ["kept", "ok", "ok"])
    assert all("champion" in e["details"] and "challenger" in e["details"] for e in decisions)


def test_search_respects_its_trial_budget(api: TestClient) -> None:
    grid = submit(
        api, model="searched", dataset="sklearn:iris", target="target", estimator="random_forest",
        params={"n_estimators": 5},
        search={"kind": "grid", "space": {"max_depth": [1, 2, 3], "min_samples_leaf": [1, 5]}, "trials": 4},
    )  # fmt: skip
    randomised = submit(
        api, model="searched", dataset="sklearn:diabetes", target="target", estimator="gradient_boosting",
        params={"n_estimators": 10}, validation={"holdout": 0.2, "folds": 3, "seed": 0},
        search={"kind": "random", "trials": 3,
                "space": {"learning_rate": {"low": 0.01, "high": 0.5, "log": True}}},
    )  # fmt: skip
    assert randomised["task"] == "regression" and randomised["metric"] == "rmse"
    grid, randomised = wait(api, grid["id"]), wait(api, randomised["id"])
    assert grid["state"] == randomised["state"] == "succeeded", (grid, randomised)
    assert grid["result"]["search"]["trials"] == 4
    assert set(grid["result"]["search"]["best_params"]) == {"max_depth", "min_samples_leaf"}
    assert randomised["result"]["search"]["trials"] == 3
    assert 0.01 <= randomised["result"]["params"]["learning_rate"] <= 0.5
    assert set(randomised["result"]["metrics"]["cv"]) == {"rmse", "mae", "r2"}


def test_cancel_a_running_and_a_queued_job(api: TestClient) -> None:
    slow = {"model": "slow", "dataset": "sklearn:digits", "target": "target", "estimator": "random_forest",
            "params": {"n_estimators": 2000}}  # fmt: skip
    running = [submit(api, **slow) for _ in range(2)]
    queued = submit(api, **slow)
    for job in running:
        wait(api, job["id"], states=("running",))
    cancelled = api.post(f"/api/v1/jobs/{queued['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    started = time.monotonic()
    for job in running:
        assert api.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 200
    for job in running:
        ended = wait(api, job["id"], timeout=15)
        assert ended["state"] == "cancelled" and ended["version"] is None
    assert time.monotonic() - started < 10
    again = api.post(f"/api/v1/jobs/{queued['id']}/cancel")
    assert again.status_code == 409
    assert api.get("/api/v1/models/slow").status_code == 404  # nothing was pushed


def test_a_job_over_its_memory_limit_fails_and_serving_goes_on(api: TestClient) -> None:
    job = submit(
        api, model="greedy", dataset="sklearn:digits", target="target", estimator="mlp",
        params={"hidden_layer_sizes": [4096, 4096], "max_iter": 5}, limits={"memory_mb": 400},
    )  # fmt: skip
    job = wait(api, job["id"])
    assert job["state"] == "failed" and job["error"].startswith("memory_limit"), job
    assert api.get("/v2/health/ready").status_code == 200
    assert infer(api, "flowers", 1, np.array([[5.1, 3.5, 1.4, 0.2]])) == [0]


def test_datasets_list_and_show_bundled_and_uploaded(api: TestClient) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"a": [1, 2, 3], "b": [0.5, None, 1.5], "c": ["x", "y", "x"]}), buffer)
    r = api.post("/api/v1/datasets/parq/versions", content=buffer.getvalue())
    assert r.status_code == 201, r.text
    assert r.json()["format"] == "parquet" and r.json()["schema"][1] == {
        "name": "b", "type": "float", "nulls": 1, "distinct": 2
    }  # fmt: skip
    names = {d["name"]: d for d in api.get("/api/v1/datasets").json()}
    assert names["parq"]["latest_version"] == 1 and names["sklearn:iris"]["bundled"] is True
    iris = api.get("/api/v1/datasets/sklearn:iris").json()
    assert iris["latest"]["rows"] == 150 and iris["latest"]["columns"] == 5
    assert api.get("/api/v1/datasets/parq/versions/1").json()["sha256"] == r.json()["sha256"]
    refused = api.post(
        "/api/v1/jobs", json={"model": "p", "dataset": "parq", "target": "a", "estimator": "random_forest"}
    )
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "features"  # c is text
    nulls = api.post(
        "/api/v1/jobs",
        json={
            "model": "p",
            "dataset": "parq",
            "target": "a",
            "features": ["b"],
            "estimator": "random_forest",
        },
    )
    assert nulls.status_code == 422 and "missing values" in nulls.json()["error"]["message"]
    estimators = {e["name"]: e for e in api.get("/api/v1/estimators").json()}
    assert set(estimators) == {
        "logistic_regression", "linear_regression", "random_forest", "gradient_boosting", "xgboost",
        "lightgbm", "mlp",
    }  # fmt: skip
    assert "n_estimators" in estimators["random_forest"]["params"]["properties"]


def test_promote_needs_the_deploy_scope(api: TestClient) -> None:
    key = api.post("/api/v1/keys", json={"name": "trainer", "scopes": ["read", "write"]}).json()["key"]
    spec = {"model": "m", "dataset": "sklearn:iris", "target": "target", "estimator": "random_forest"}
    headers = {"Authorization": f"Bearer {key}"}
    r = api.post("/api/v1/jobs", json=spec | {"promote": {"alias": "production"}}, headers=headers)
    assert r.status_code == 403
    ok = api.post("/api/v1/jobs", json=spec | {"params": {"n_estimators": 3}}, headers=headers)
    assert ok.status_code == 202 and ok.json()["created_by"] == "trainer"
    wait(api, ok.json()["id"])


def test_a_key_limited_to_some_models_reaches_only_datasets_of_those_names(api: TestClient) -> None:
    assert (
        api.post("/api/v1/datasets/fraud-rows/versions", content=b"a,b\n1,0\n2,1\n3,0\n").status_code == 201
    )
    assert (
        api.post("/api/v1/datasets/other-rows/versions", content=b"a,b\n1,0\n2,1\n3,0\n").status_code == 201
    )
    created = api.post(
        "/api/v1/keys", json={"name": "fenced", "scopes": ["read", "write"], "models": "fraud-*"}
    )
    fenced = {"Authorization": f"Bearer {created.json()['key']}"}
    names = {d["name"] for d in api.get("/api/v1/datasets", headers=fenced).json()}
    assert "fraud-rows" in names and "other-rows" not in names and "sklearn:iris" in names
    assert api.get("/api/v1/datasets/other-rows", headers=fenced).status_code == 404
    assert api.get("/api/v1/datasets/other-rows/versions/1", headers=fenced).status_code == 404
    assert api.delete("/api/v1/datasets/other-rows", headers=fenced).status_code == 404
    assert (
        api.post("/api/v1/datasets/other-rows/versions", content=b"a\n1\n", headers=fenced).status_code == 404
    )
    spec = {"model": "fraud-m", "dataset": "other-rows:1", "target": "b", "estimator": "random_forest"}
    assert api.post("/api/v1/jobs", json=spec, headers=fenced).status_code == 404
    assert api.get("/api/v1/datasets/fraud-rows", headers=fenced).status_code == 200
    assert api.get("/api/v1/datasets/other-rows").status_code == 200  # the admin sees it
