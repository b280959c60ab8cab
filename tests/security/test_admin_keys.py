"""The bootstrap admin key: revoking it survives a restart, the last active admin key is kept unless
forced, and a new bootstrap key appears (audited) only when no active admin key is left."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelport.server import build_app, build_services
from modelport.settings import Settings
from tests.conftest import ADMIN_KEY, AUTH, IN_PROCESS_HOSTS


@contextmanager
def started(data_dir: Path, admin_key: str | None = ADMIN_KEY) -> Iterator[tuple[TestClient, str | None]]:
    """One run of the server over ``data_dir`` (start-up chores included) with ``admin_key`` as
    MODELPORT_ADMIN_KEY: its client and the admin key it generated, if it did."""
    settings = Settings(data_dir=data_dir, admin_key=admin_key, allowed_hosts=IN_PROCESS_HOSTS)
    services = build_services(settings)
    try:
        with TestClient(build_app(services), raise_server_exceptions=False) as client:
            yield client, services.generated_admin_key
    finally:
        services.close()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def audit(client: TestClient, headers: dict[str, str], action: str) -> list[dict[str, Any]]:
    r = client.get("/api/v1/audit", params={"action": action}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_revoked_admin_key_stays_revoked_across_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    with started(data) as (api, generated):
        assert generated is None  # MODELPORT_ADMIN_KEY is set: nothing to show
        boot = audit(api, AUTH, "key.bootstrap")
        assert [(e["actor"], e["target"], e["details"]["source"]) for e in boot] == [
            ("modelport", "admin", "MODELPORT_ADMIN_KEY")
        ]
        last = api.delete("/api/v1/keys/admin", headers=AUTH)
        assert last.status_code == 409 and "last active admin key" in last.json()["error"]["message"]
        assert "force=true" in last.json()["error"]["message"]
        ops = api.post("/api/v1/keys", json={"name": "ops", "scopes": ["admin"]}, headers=AUTH).json()["key"]
        assert api.delete("/api/v1/keys/admin", headers=AUTH).status_code == 200
        assert api.get("/api/v1/models", headers=AUTH).status_code == 401

    caplog.set_level(logging.WARNING, logger="modelport.keys")
    with started(data) as (api, generated):  # the same MODELPORT_ADMIN_KEY, configured again
        assert generated is None
        r = api.get("/api/v1/models", headers=AUTH)
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
        assert api.get("/api/v1/models", headers=bearer(ops)).status_code == 200
        assert len(audit(api, bearer(ops), "key.bootstrap")) == 1  # nothing was created again
        keys = {k["name"]: k for k in api.get("/api/v1/keys", headers=bearer(ops)).json()}
        assert keys["admin"]["revoked_at"] and keys["ops"]["revoked_at"] is None
    assert any("stays revoked" in m for m in caplog.messages)


def test_forced_revocation_of_the_last_admin_key_then_a_restart_creates_a_new_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with started(data) as (api, _):
        refused = api.delete("/api/v1/keys/admin", headers=AUTH)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"
        assert api.get("/api/v1/models", headers=AUTH).status_code == 200  # still there
        forced = api.delete("/api/v1/keys/admin", params={"force": "true"}, headers=AUTH)
        assert forced.status_code == 200 and forced.json()["revoked_at"]
        assert api.get("/api/v1/models", headers=AUTH).status_code == 401

    with started(data) as (api, generated):
        assert generated and generated != ADMIN_KEY  # printed once by `modelport serve`
        assert (data / "admin.key").read_text().strip() == generated
        assert (data / "admin.key").stat().st_mode & 0o777 == 0o600
        assert api.get("/api/v1/models", headers=AUTH).status_code == 401  # the old one stays revoked
        new = bearer(generated)
        revoked = audit(api, new, "key.revoke")
        assert [(e["target"], e["details"].get("forced")) for e in revoked] == [("admin", True)]
        boot = audit(api, new, "key.bootstrap")
        assert [(e["target"], e["details"]["source"]) for e in boot] == [
            ("admin-2", "generated"),
            ("admin", "MODELPORT_ADMIN_KEY"),
        ]
        assert {k["name"] for k in api.get("/api/v1/keys", headers=new).json()} == {"admin", "admin-2"}

    with started(data) as (api, generated):  # an active admin key exists: nothing changes
        assert generated is None
        assert len(audit(api, bearer((data / "admin.key").read_text().strip()), "key.bootstrap")) == 2


def test_a_file_admin_key_that_was_revoked_is_replaced_not_revived(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with started(data, admin_key=None) as (api, first):
        assert first and (data / "admin.key").read_text().strip() == first
        assert (
            api.delete("/api/v1/keys/admin", params={"force": "true"}, headers=bearer(first)).status_code
            == 200
        )
    with started(data, admin_key=None) as (api, second):
        assert second and second != first
        assert api.get("/api/v1/models", headers=bearer(first)).status_code == 401
        assert api.get("/api/v1/models", headers=bearer(second)).status_code == 200


def test_revoking_an_admin_key_while_another_is_active_needs_no_force(api: TestClient) -> None:
    r = api.post("/api/v1/keys", json={"name": "second", "scopes": ["admin"]})
    assert r.status_code == 201
    assert api.delete("/api/v1/keys/second").status_code == 200
    assert api.delete("/api/v1/keys/admin").status_code == 409  # "second" is revoked: admin is the last
    reader = api.post("/api/v1/keys", json={"name": "reader", "scopes": ["read"]})
    assert reader.status_code == 201
    assert api.delete("/api/v1/keys/admin").status_code == 409  # a read key is no admin
    events = audit(api, AUTH, "key.revoke")
    assert [(e["target"], e["details"].get("forced")) for e in events] == [("second", None)]
