"""Aliases (names, delete, promote from another alias), version config (GET, PUT, PATCH), audit filters
and same-bytes pushes, through HTTP."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelport.server import Services
from tests.conftest import push

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}


@pytest.fixture
def iris(api: TestClient, artifacts: dict[str, Path]) -> TestClient:
    for _ in range(3):
        assert push(api, "iris", artifacts["iris.skops"]).status_code == 201
    return api


# ---- alias names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/api/v1/models/iris/aliases/7", {"version": 1}),
        ("PUT", "/api/v1/models/iris/aliases/2", {"version": 1}),
        ("PUT", "/api/v1/models/iris/aliases/production", {"alias": "3"}),
        ("POST", "/api/v1/models/iris/aliases/7/rollback", None),
        ("GET", "/api/v1/models/iris/aliases/7/history", None),
        ("DELETE", "/api/v1/models/iris/aliases/7", None),
    ],
)
def test_all_digit_alias_names_are_refused_everywhere(
    iris: TestClient, method: str, path: str, body: dict[str, object] | None
) -> None:
    r = iris.request(method, path, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_name" and error["field"] == "alias"
    assert "may not be all digits" in error["message"]
    assert iris.get("/api/v1/models/iris/aliases").json() == []


def test_alias_names_with_digits_and_a_letter_are_fine(iris: TestClient) -> None:
    assert iris.put("/api/v1/models/iris/aliases/v2", json={"version": 2}).status_code == 200
    assert iris.post("/v2/models/iris/versions/v2/infer", json=ROW).json()["model_version"] == "2"


# ---- delete an alias -----------------------------------------------------------------------------------
def test_delete_alias_unblocks_its_version_and_drops_routes(iris: TestClient) -> None:
    assert iris.put("/api/v1/models/iris/aliases/staging", json={"version": 2}).status_code == 200
    assert iris.post("/v2/models/iris/versions/staging/infer", json=ROW).status_code == 200  # route cached
    blocked = iris.delete("/api/v1/models/iris/versions/2")
    assert blocked.status_code == 409 and "staging" in blocked.json()["error"]["message"]

    assert iris.delete("/api/v1/models/iris/aliases/staging").status_code == 204
    gone = iris.post("/v2/models/iris/versions/staging/infer", json=ROW)
    assert gone.status_code == 404, gone.text  # the cached route was dropped
    assert iris.get("/api/v1/models/iris/aliases").json() == []
    assert iris.delete("/api/v1/models/iris/aliases/staging").status_code == 404
    history = iris.get("/api/v1/models/iris/aliases/staging/history").json()
    assert [(h["action"], h["version"]) for h in history] == [("delete", 2), ("promote", 2)]
    assert iris.delete("/api/v1/models/iris/versions/2").status_code == 204

    event = iris.get("/api/v1/audit", params={"action": "alias.delete"}).json()[0]
    assert (event["target"], event["details"]["version"], event["actor"]) == ("iris@staging", 2, "admin")


def test_an_alias_created_again_starts_a_fresh_rollback_history(iris: TestClient) -> None:
    for version in (1, 2):
        iris.put("/api/v1/models/iris/aliases/canary", json={"version": version})
    assert iris.delete("/api/v1/models/iris/aliases/canary").status_code == 204
    iris.put("/api/v1/models/iris/aliases/canary", json={"version": 3})
    assert iris.post("/api/v1/models/iris/aliases/canary/rollback").status_code == 409  # not back to 2


def test_deleting_aliases_needs_the_deploy_scope(iris: TestClient) -> None:
    iris.put("/api/v1/models/iris/aliases/staging", json={"version": 1})
    writer = iris.post("/api/v1/keys", json={"name": "w", "scopes": ["write", "read"]}).json()["key"]
    r = iris.delete("/api/v1/models/iris/aliases/staging", headers={"Authorization": f"Bearer {writer}"})
    assert r.status_code == 403
    assert [a["alias"] for a in iris.get("/api/v1/models/iris/aliases").json()] == ["staging"]


# ---- promote what another alias points at --------------------------------------------------------------
def test_promote_from_another_alias(iris: TestClient) -> None:
    iris.put("/api/v1/models/iris/aliases/staging", json={"version": 3})
    r = iris.put("/api/v1/models/iris/aliases/production", json={"alias": "staging"})
    assert r.status_code == 200 and r.json()["version"] == 3
    assert iris.post("/v2/models/iris/infer", json=ROW).json()["model_version"] == "3"
    missing = iris.put("/api/v1/models/iris/aliases/production", json={"alias": "nightly"})
    assert missing.status_code == 404 and "nightly" in missing.json()["error"]["message"]
    for body in ({"version": 1, "alias": "staging"}, {}):
        bad = iris.put("/api/v1/models/iris/aliases/production", json=body)
        assert bad.status_code == 400 and "exactly one" in bad.json()["error"]["message"]
    typo = iris.put("/api/v1/models/iris/aliases/production", json={"versoin": 1})
    assert typo.status_code == 400 and typo.json()["error"]["field"] == "versoin"
    assert iris.get("/api/v1/models/iris/aliases").json()[0]["version"] == 3


# ---- version config ------------------------------------------------------------------------------------
def test_config_get_patch_put(iris: TestClient) -> None:
    url = "/api/v1/models/iris/versions/1/config"
    assert iris.get(url).json() == {}
    both = {"batching": {"max_batch_size": 8, "max_queue": 50}}
    assert iris.put(url, json=both).json()["config"] == both
    patched = iris.patch(url, json={"batching": {"max_delay_ms": 2.5}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["config"] == {
        "batching": {"max_batch_size": 8, "max_queue": 50, "max_delay_ms": 2.5}
    }
    removed = iris.patch(
        url, json={"batching": {"max_queue": None}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert removed.json()["config"] == {"batching": {"max_batch_size": 8, "max_delay_ms": 2.5}}
    assert iris.get(url).json() == removed.json()["config"]
    # PUT replaces the whole: what it leaves out goes back to the server's default
    assert iris.put(url, json={"batching": {"max_queue": 9}}).json()["config"] == {
        "batching": {"max_queue": 9}
    }
    assert iris.patch(url, json={"batching": None}).json()["config"] == {}

    events = iris.get("/api/v1/audit", params={"action": "version.config"}).json()
    assert [e["details"]["mode"] for e in reversed(events)] == [
        "replace",
        "merge",
        "merge",
        "replace",
        "merge",
    ]
    assert events[0]["target"] == "iris/1" and events[0]["details"]["config"] == {}


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_config_refuses_unknown_fields_naming_them(iris: TestClient, method: str) -> None:
    url = "/api/v1/models/iris/versions/1/config"
    iris.put(url, json={"batching": {"max_queue": 7}})
    for body, field in (
        ({"batching": {"max_batchsize": 4}}, "batching.max_batchsize"),
        ({"batchin": {}}, "batchin"),
    ):
        r = iris.request(method, url, json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["field"] == field and "unknown field" in r.json()["error"]["message"]
    assert iris.get(url).json() == {"batching": {"max_queue": 7}}  # nothing was reset


def test_config_scopes(iris: TestClient) -> None:
    url = "/api/v1/models/iris/versions/1/config"
    reader = iris.post("/api/v1/keys", json={"name": "r", "scopes": ["read"]}).json()["key"]
    headers = {"Authorization": f"Bearer {reader}"}
    assert iris.get(url, headers=headers).status_code == 200
    assert iris.patch(url, json={"batching": {"max_queue": 2}}, headers=headers).status_code == 403
    assert iris.put(url, json={}, headers=headers).status_code == 403
    assert iris.get("/api/v1/models/iris/versions/9/config").status_code == 404


# ---- JSON bodies without a JSON Content-Type -------------------------------------------------------------
@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_json_management_bodies_need_no_content_type(iris: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    created = iris.post("/api/v1/models", content=b'{"name": "plain"}', headers=headers)
    assert created.status_code == 201, created.text
    moved = iris.put("/api/v1/models/iris/aliases/production", content=b'{"version": 1}', headers=headers)
    assert moved.status_code == 200, moved.text
    key = iris.post("/api/v1/keys", content=b'{"name": "k", "scopes": ["read"]}', headers=headers)
    assert key.status_code == 201, key.text
    config = iris.patch("/api/v1/models/iris/versions/1/config", content=b'{"batching": {}}', headers=headers)
    assert config.status_code == 200, config.text
    iris.delete("/api/v1/keys/k")
    bad = iris.post("/api/v1/models", content=b"name=plain", headers=headers)
    assert bad.status_code == 400 and "malformed JSON body" in bad.json()["error"]["message"]
    empty = iris.post("/api/v1/models", headers=headers)
    assert empty.status_code == 400 and "JSON body" in empty.json()["error"]["message"]


# ---- NaN and Infinity in inference ---------------------------------------------------------------------
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "nan", "inf"])
def test_non_finite_numbers_in_json_inference_are_named(iris: TestClient, value: str) -> None:
    iris.put("/api/v1/models/iris/aliases/production", json={"version": 1})
    tensor = f'{{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [{value}, 1, 2, 3]}}'
    r = iris.post("/v2/models/iris/infer", content=f'{{"inputs": [{tensor}]}}'.encode())
    assert r.status_code == 400
    assert "NaN and Infinity are not valid JSON numbers" in r.json()["error"]


# ---- audit filters -------------------------------------------------------------------------------------
def test_audit_model_filter_and_paging(iris: TestClient, artifacts: dict[str, Path]) -> None:
    push(iris, "iris_x", artifacts["iris.skops"])  # "_" must not act as a wildcard
    push(iris, "irisx", artifacts["iris.skops"])
    iris.put("/api/v1/models/iris/aliases/production", json={"version": 1})
    iris.put("/api/v1/models/iris/versions/1/config", json={})
    targets = [e["target"] for e in iris.get("/api/v1/audit", params={"model": "iris"}).json()]
    assert targets == ["iris/1", "iris@production", "iris/3", "iris/2", "iris/1"]
    assert [e["target"] for e in iris.get("/api/v1/audit", params={"model": "iris_x"}).json()] == ["iris_x/1"]

    everything = iris.get("/api/v1/audit").json()
    pages, before = [], None
    while True:
        params = {"limit": 3, **({"before": before} if before else {})}
        page = iris.get("/api/v1/audit", params=params).json()
        if not page:
            break
        pages.append(page)
        before = page[-1]["id"]
    assert [e["id"] for page in pages for e in page] == [e["id"] for e in everything]
    assert all(len(page) <= 3 for page in pages) and len(pages) >= 3
    assert iris.get("/api/v1/audit", params={"model": "Bad Name"}).status_code == 400
    assert iris.get("/api/v1/audit", params={"before": 0}).status_code == 400


# ---- pushing the same bytes again ----------------------------------------------------------------------
def test_push_names_versions_with_the_same_bytes(api: TestClient, artifacts: dict[str, Path]) -> None:
    first = push(api, "iris", artifacts["iris.skops"]).json()
    assert first["same_sha256_as"] == []
    assert push(api, "iris", artifacts["iris.json"]).json()["same_sha256_as"] == []
    third = push(api, "iris", artifacts["iris.skops"])
    assert third.status_code == 201 and third.json()["state"] == "ready"  # kept, not refused
    assert third.json()["same_sha256_as"] == [1]
    assert third.json()["sha256"] == hashlib.sha256(artifacts["iris.skops"].read_bytes()).hexdigest()
    assert push(api, "other", artifacts["iris.skops"]).json()["same_sha256_as"] == []  # per model
    assert push(api, "iris", artifacts["iris.skops"]).json()["same_sha256_as"] == [1, 3]


def test_all_digit_aliases_are_refused_by_the_registry_too(services: Services, iris: TestClient) -> None:
    from modelport.errors import InvalidName

    with pytest.raises(InvalidName):
        services.registry.aliases.set("iris", "12", 1, by="t")
