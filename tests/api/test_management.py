"""Management API in process: push, versions, aliases, delete, audit."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi.testclient import TestClient

from modelport.server import Services
from tests.conftest import push


def test_push_returns_a_ready_version_with_signature(api: TestClient, artifacts: dict[str, Path]) -> None:
    data = artifacts["iris.skops"].read_bytes()
    r = push(api, "iris", artifacts["iris.skops"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["version"] == 1 and body["state"] == "ready" and body["framework"] == "sklearn"
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["signature"]["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert [o["name"] for o in body["signature"]["outputs"]] == ["predict", "predict_proba"]
    assert push(api, "iris", artifacts["iris.skops"]).json()["version"] == 2


def test_every_builtin_format_is_recognised_by_content(api: TestClient, artifacts: dict[str, Path]) -> None:
    expected = {
        "cancer.skops": "sklearn",
        "cancer.onnx": "onnx",
        "iris.json": "xgboost",
        "iris.ubj": "xgboost",
        "diabetes.txt": "lightgbm",
        "cancer-lgbm.txt": "lightgbm",
    }
    for name, framework in expected.items():
        # no file name hint: the format must come from the bytes
        r = api.post("/api/v1/models/m/versions", content=artifacts[name].read_bytes())
        assert r.status_code == 201, r.text
        assert (r.json()["framework"], r.json()["state"]) == (framework, "ready"), name


def test_model_crud_and_listing(api: TestClient, artifacts: dict[str, Path]) -> None:
    assert api.post("/api/v1/models", json={"name": "iris", "description": "flowers"}).status_code == 201
    assert api.post("/api/v1/models", json={"name": "iris"}).status_code == 409
    push(api, "iris", artifacts["iris.skops"])
    api.put("/api/v1/models/iris/aliases/production", json={"version": 1})
    listing = api.get("/api/v1/models").json()
    assert listing[0]["name"] == "iris" and listing[0]["aliases"] == {"production": 1}
    shown = api.get("/api/v1/models/iris").json()
    assert shown["description"] == "flowers" and [v["version"] for v in shown["versions"]] == [1]
    assert api.delete("/api/v1/models/iris").status_code == 204
    assert api.get("/api/v1/models/iris").status_code == 404


def test_versions_list_get_delete(api: TestClient, artifacts: dict[str, Path]) -> None:
    push(api, "iris", artifacts["iris.skops"])
    push(api, "iris", artifacts["iris.json"])
    versions = api.get("/api/v1/models/iris/versions").json()
    assert [(v["version"], v["framework"]) for v in versions] == [(1, "sklearn"), (2, "xgboost")]
    for key in ("version", "state", "sha256", "framework", "signature", "created_at"):
        assert key in versions[0]
    assert api.get("/api/v1/models/iris/versions/2").json()["framework"] == "xgboost"
    api.put("/api/v1/models/iris/aliases/production", json={"version": 2})
    conflict = api.delete("/api/v1/models/iris/versions/2")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"
    assert api.delete("/api/v1/models/iris/versions/1").status_code == 204
    assert api.get("/api/v1/models/iris/versions/1").status_code == 404


def test_failed_version_records_reason_and_never_serves(api: TestClient, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07\x12\x08pytorch" + b"\xff" * 64)  # ONNX header, garbage after it
    r = api.post("/api/v1/models/bad/versions", content=broken.read_bytes())
    assert r.status_code == 201
    assert r.json()["state"] == "failed" and r.json()["error"]
    promote = api.put("/api/v1/models/bad/aliases/production", json={"version": 1})
    assert promote.status_code == 409
    infer = api.post(
        "/v2/models/bad/versions/1/infer",
        json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
    )
    assert infer.status_code == 503 and "failed" in infer.json()["error"]


def test_alias_promote_rollback_history(api: TestClient, artifacts: dict[str, Path]) -> None:
    for _ in range(3):
        push(api, "iris", artifacts["iris.skops"])
    for v in (1, 2, 3):
        r = api.put("/api/v1/models/iris/aliases/production", json={"version": v})
        assert r.status_code == 200 and r.json()["version"] == v
    assert api.post("/api/v1/models/iris/aliases/production/rollback").json()["version"] == 2
    aliases = api.get("/api/v1/models/iris/aliases").json()
    assert aliases[0]["alias"] == "production" and aliases[0]["version"] == 2
    history = api.get("/api/v1/models/iris/aliases/production/history").json()
    assert [h["version"] for h in history] == [2, 3, 2, 1]
    assert all({"version", "at", "by"} <= set(h) for h in history)
    assert history[0]["by"] == "admin"
    assert api.post("/api/v1/models/iris/aliases/staging/rollback").status_code == 404


def test_every_change_is_audited(api: TestClient, artifacts: dict[str, Path]) -> None:
    push(api, "iris", artifacts["iris.skops"])
    api.put("/api/v1/models/iris/aliases/production", json={"version": 1})
    push(api, "iris", artifacts["iris.skops"])
    api.put("/api/v1/models/iris/aliases/production", json={"version": 2})
    api.post("/api/v1/models/iris/aliases/production/rollback")
    api.delete("/api/v1/models/iris/versions/2")
    api.delete("/api/v1/models/iris")
    events = api.get("/api/v1/audit").json()
    bootstrap = events.pop()  # the oldest: the server created its admin key at the first start
    assert (bootstrap["action"], bootstrap["actor"], bootstrap["target"]) == (
        "key.bootstrap",
        "modelport",
        "admin",
    )
    actions = [e["action"] for e in reversed(events)]
    assert actions == [
        "version.push",
        "alias.set",
        "version.push",
        "alias.set",
        "alias.rollback",
        "version.delete",
        "model.delete",
    ]
    assert all(e["actor"] == "admin" and e["at"] for e in events)
    assert all(e["details"]["from"].startswith("testclient:") for e in events)  # where each came from
    assert [e["target"] for e in api.get("/api/v1/audit", params={"action": "alias.set"}).json()] == [
        "iris@production",
        "iris@production",
    ]


def test_openapi_and_local_docs(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    assert "/api/v1/models/{model}/versions" in spec["paths"]
    page = api.get("/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    assert api.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_version_metadata_attached_later_is_shown(
    api: TestClient, services: Services, artifacts: dict[str, Path]
) -> None:
    assert push(api, "iris", artifacts["iris.skops"]).json()["metadata"] == {}
    services.registry.models.update_metadata("iris", 1, {"lineage": {"converted_from": 7}})
    assert api.get("/api/v1/models/iris/versions/1").json()["metadata"] == {"lineage": {"converted_from": 7}}
