"""Directory archives are accepted; auth protects every route by scope."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import push

ROW30 = {"inputs": [{"name": "X", "shape": [1, 30], "datatype": "FP32", "data": [0.5] * 30}]}


def test_zip_directory_archive(api: TestClient, artifacts: dict[str, Path]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bundle/README.md", b"# my model")
        zf.writestr("bundle/model.onnx", artifacts["cancer.onnx"].read_bytes())
    r = api.post("/api/v1/models/zipped/versions", content=buf.getvalue())
    assert r.status_code == 201 and r.json()["state"] == "ready", r.text
    assert sorted(f["path"] for f in r.json()["files"]) == ["bundle/README.md", "bundle/model.onnx"]
    assert api.post("/v2/models/zipped/infer", json=ROW30).status_code == 200


def test_tar_gz_directory_archive(api: TestClient, artifacts: dict[str, Path], tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(artifacts["diabetes.txt"], arcname="model/booster.txt")
    r = push(api, "tarred", archive)
    assert r.status_code == 201 and (r.json()["state"], r.json()["framework"]) == ("ready", "lightgbm"), (
        r.text
    )


def test_identical_files_share_one_blob(
    api: TestClient, artifacts: dict[str, Path], services: object
) -> None:
    push(api, "a", artifacts["iris.skops"])
    push(api, "b", artifacts["iris.skops"])
    store = services.repository.store  # type: ignore[attr-defined]
    assert len(list(store.digests())) == 1
    api.delete("/api/v1/models/a")
    assert len(list(store.digests())) == 1  # still used by b
    api.delete("/api/v1/models/b")
    assert list(store.digests()) == []


def key(api: TestClient, name: str, *scopes: str) -> dict[str, str]:
    r = api.post("/api/v1/keys", json={"name": name, "scopes": list(scopes)})
    assert r.status_code == 201, r.text
    assert r.json()["key"].startswith("mp_")
    return {"Authorization": f"Bearer {r.json()['key']}"}


def test_missing_and_invalid_keys(api: TestClient, artifacts: dict[str, Path]) -> None:
    push(api, "iris", artifacts["iris.skops"])
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        r = api.get("/api/v1/models", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
        assert r.headers["www-authenticate"] == "Bearer"
        r = api.post("/v2/models/iris/infer", json=ROW30, headers=headers)
        assert r.status_code == 401 and isinstance(r.json()["error"], str)


def test_scopes(api: TestClient, artifacts: dict[str, Path]) -> None:
    push(api, "iris", artifacts["iris.skops"])
    infer = key(api, "infer-only", "infer")
    reader = key(api, "reader", "read")
    writer = key(api, "writer", "write")
    deployer = key(api, "deployer", "deploy")
    row = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}

    assert api.post("/v2/models/iris/infer", json=row, headers=infer).status_code == 200
    assert api.get("/v2/models/iris", headers=infer).status_code == 200
    r = api.get("/api/v1/models", headers=infer)  # an inference key on a management route
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert push(api, "iris", artifacts["iris.skops"]).status_code == 201
    assert api.post("/api/v1/models/iris/versions", content=b"x", headers=infer).status_code == 403

    assert api.get("/api/v1/models", headers=reader).status_code == 200
    assert api.post("/v2/models/iris/infer", json=row, headers=reader).status_code == 403
    assert api.delete("/api/v1/models/iris/versions/2", headers=reader).status_code == 403
    assert (
        api.put("/api/v1/models/iris/aliases/production", json={"version": 1}, headers=writer).status_code
        == 403
    )
    assert (
        api.put("/api/v1/models/iris/aliases/production", json={"version": 1}, headers=deployer).status_code
        == 200
    )
    assert api.post("/v2/repository/models/iris/unload", headers=writer).status_code == 403
    assert api.delete("/api/v1/models/iris/versions/2", headers=writer).status_code == 204
    assert api.get("/api/v1/audit", headers=deployer).status_code == 403
    assert api.get("/api/v1/keys", headers=reader).status_code == 403


def test_revoked_key_stops_working(api: TestClient) -> None:
    headers = key(api, "temp", "read")
    assert api.get("/api/v1/models", headers=headers).status_code == 200
    assert api.delete("/api/v1/keys/temp").status_code == 200
    assert api.get("/api/v1/models", headers=headers).status_code == 401
    listed = {k["name"]: k for k in api.get("/api/v1/keys").json()}
    assert (
        listed["temp"]["revoked_at"]
        and "key" not in listed["temp"]
        and listed["admin"]["scopes"] == ["admin"]
    )


def test_auth_off_on_loopback_only(tmp_path: Path) -> None:
    import pytest

    from modelport.errors import ConfigError
    from modelport.server import build_app, build_services
    from modelport.settings import Settings

    with pytest.raises(ConfigError):
        build_services(Settings(data_dir=tmp_path / "d", auth=False, host="0.0.0.0"))
    services = build_services(Settings(data_dir=tmp_path / "d", auth=False, allowed_hosts=["testserver"]))
    with TestClient(build_app(services)) as open_api:
        assert open_api.get("/api/v1/models").status_code == 200
    assert not (tmp_path / "d" / "admin.key").exists()
    services.close()


def test_generated_admin_key_is_written_private(tmp_path: Path) -> None:
    from modelport.server import build_app, build_services
    from modelport.settings import Settings

    services = build_services(Settings(data_dir=tmp_path / "d", allowed_hosts=["testserver"]))
    secret = services.generated_admin_key
    key_file = tmp_path / "d" / "admin.key"
    assert secret and key_file.read_text().strip() == secret
    assert key_file.stat().st_mode & 0o777 == 0o600
    with TestClient(build_app(services)) as client:
        assert client.get("/api/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    services.close()
    again = build_services(Settings(data_dir=tmp_path / "d"))
    assert again.generated_admin_key is None  # generated once, then read back
    again.close()


def test_keys_expire(api: TestClient) -> None:
    import time
    from datetime import UTC, datetime, timedelta

    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    r = api.post("/api/v1/keys", json={"name": "brief", "scopes": ["read"], "expires_at": soon})
    assert r.status_code == 201 and r.json()["expires_at"]
    headers = {"Authorization": f"Bearer {r.json()['key']}"}
    assert api.get("/api/v1/models", headers=headers).status_code == 200  # and now cached
    time.sleep(1.6)
    r = api.get("/api/v1/models", headers=headers)
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    bad = api.post("/api/v1/keys", json={"name": "old", "scopes": ["read"], "expires_at": past})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "expires_at"
    naive = api.post(
        "/api/v1/keys", json={"name": "naive", "scopes": ["read"], "expires_at": "2999-01-01T00:00:00"}
    )
    assert naive.status_code == 400
    assert api.post("/api/v1/keys", json={"name": "x", "scopes": ["root"]}).status_code == 400


def test_denied_management_calls_are_audited(api: TestClient) -> None:
    infer = key(api, "infer-only", "infer")
    assert api.delete("/api/v1/models/iris", headers=infer).status_code == 403
    assert api.get("/api/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    denied = api.get("/api/v1/audit", params={"action": "auth.denied"}).json()
    assert [(d["actor"], d["target"], d["result"], d["details"]["reason"]) for d in denied] == [
        ("anonymous", "GET /api/v1/models", "denied", "unauthenticated"),
        ("infer-only", "DELETE /api/v1/models/iris", "denied", "forbidden"),
    ]
    assert denied[0]["details"]["from"]


def test_dns_rebinding_is_refused_on_management_routes(tmp_path: Path) -> None:
    from modelport.server import build_app, build_services
    from modelport.settings import Settings

    # auth off on loopback: exactly the set-up a rebinding page would target
    services = build_services(Settings(data_dir=tmp_path / "d", auth=False))
    with TestClient(build_app(services), base_url="http://127.0.0.1:8080") as client:
        assert client.get("/api/v1/models").status_code == 200
        assert client.get("/api/v1/models", headers={"Host": "localhost:8080"}).status_code == 200
        r = client.get("/api/v1/models", headers={"Host": "evil.example:8080"})
        assert r.status_code == 403 and "evil.example" in r.json()["error"]["message"]
        r = client.delete("/api/v1/models/x", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "origin" in r.json()["error"]["message"]
        assert client.get("/api/v1/models", headers={"Origin": "http://127.0.0.1:8080"}).status_code == 200
        # a sandboxed frame of any site sends Origin: null, and a text/plain body needs no preflight
        r = client.post(
            "/api/v1/models",
            content=b'{"name": "csrf"}',
            headers={"Origin": "null", "Content-Type": "text/plain"},
        )
        assert r.status_code == 403 and "null" in r.json()["error"]["message"]
        assert client.get("/v2/health/live", headers={"Host": "evil.example"}).status_code == 200  # probes
        denied = client.get("/api/v1/audit", params={"action": "auth.denied"}).json()
        assert len(denied) == 3
    services.close()
    services = build_services(Settings(data_dir=tmp_path / "e", auth=False, allowed_hosts=["*"]))
    with TestClient(build_app(services)) as client:
        assert client.get("/api/v1/models", headers={"Host": "anything.example"}).status_code == 200
    services.close()


def test_key_limited_to_models_sees_others_as_missing(api: TestClient, artifacts: dict[str, Path]) -> None:
    push(api, "iris", artifacts["iris.skops"])
    push(api, "fraud-a", artifacts["iris.skops"])
    r = api.post(
        "/api/v1/keys", json={"name": "fraud", "scopes": ["read", "infer", "write"], "models": "fraud-*"}
    )
    assert r.status_code == 201 and r.json()["models"] == "fraud-*"
    fraud = {"Authorization": f"Bearer {r.json()['key']}"}
    row = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}

    assert api.post("/v2/models/fraud-a/infer", json=row, headers=fraud).status_code == 200
    assert api.get("/api/v1/models/fraud-a", headers=fraud).status_code == 200
    assert [m["name"] for m in api.get("/api/v1/models", headers=fraud).json()] == ["fraud-a"]
    assert [e["name"] for e in api.post("/v2/repository/index", headers=fraud).json()] == ["fraud-a"]
    for r in (
        api.post("/v2/models/iris/infer", json=row, headers=fraud),
        api.get("/v2/models/iris", headers=fraud),
        api.get("/v2/models/iris/ready", headers=fraud),
        api.get("/api/v1/models/iris", headers=fraud),
        api.get("/api/v1/models/iris/versions/1", headers=fraud),
        api.post("/api/v1/models/iris/versions", content=artifacts["iris.skops"].read_bytes(), headers=fraud),
        api.post("/api/v1/models", json={"name": "other"}, headers=fraud),
    ):
        assert r.status_code == 404, r.text  # not 403: the key learns nothing about other models
    assert push(api, "fraud-b", artifacts["iris.skops"]).status_code == 201
    bad = api.post("/api/v1/keys", json={"name": "bad", "scopes": ["read"], "models": "../x"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "models"


def test_per_key_rate_limit_answers_429_with_retry_after(api: TestClient, artifacts: dict[str, Path]) -> None:
    push(api, "iris", artifacts["iris.skops"])
    r = api.post("/api/v1/keys", json={"name": "slow", "scopes": ["infer", "read"], "rate_limit": 2})
    assert r.status_code == 201 and r.json()["rate_limit"] == 2
    slow = {"Authorization": f"Bearer {r.json()['key']}"}
    row = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
    statuses = [api.post("/v2/models/iris/infer", json=row, headers=slow).status_code for _ in range(5)]
    assert statuses[:2] == [200, 200] and 429 in statuses[2:]
    limited = api.post("/v2/models/iris/infer", json=row, headers=slow)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert "limit" in limited.json()["error"]
    r = api.get("/api/v1/models", headers=slow)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited" and r.headers["retry-after"]
    assert api.post("/v2/models/iris/infer", json=row).status_code == 200  # other keys are not affected
    import time

    time.sleep(1.0)
    assert api.post("/v2/models/iris/infer", json=row, headers=slow).status_code == 200  # refilled
