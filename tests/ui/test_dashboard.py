"""The dashboard over an in-process app (no browser): sessions, cookies, CSRF, Host/Origin, scopes and
model limits, the actions through the same service calls as the API, and the JSON of the charts.

The client runs without the app's lifespan (no reconcile loop, job runner or monitoring thread): each
action here reconciles by itself, and monitoring reports read the in-memory statistics."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from modelport.registry.tables import UiSessionRow
from modelport.server import Services, build_app
from tests.conftest import ADMIN_KEY, AUTH, make_services, push

IRIS_ROW = {
    "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]
}


def client_of(services: Services, base_url: str = "http://testserver") -> TestClient:
    return TestClient(build_app(services), base_url=base_url, follow_redirects=False)


def api_of(services: Services) -> TestClient:
    return TestClient(build_app(services), headers=AUTH)


@pytest.fixture
def ui(services: Services) -> TestClient:
    return client_of(services)


@pytest.fixture
def iris(services: Services, artifacts: dict[str, Path]) -> Services:
    """iris v1 and v2 (both ready), production -> 1."""
    api = api_of(services)
    for _ in range(2):
        assert push(api, "iris", artifacts["iris.skops"]).status_code == 201
    services.dataplane.promote("iris", "production", 1, by="test")
    return services


def sign_in(client: TestClient, key: str = ADMIN_KEY) -> str:
    """Sign in; the CSRF token of the session's forms."""
    r = client.post("/ui/signin", data={"key": key, "next": "/ui/"})
    assert r.status_code == 303, r.text
    page = client.get("/ui/")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def new_key(services: Services, name: str, scopes: list[str], models: str | None = None) -> str:
    _, secret = services.keys.create(name, scopes, by="test", models=models)
    return secret


def session_rows(services: Services) -> list[str]:
    with services.registry.db.tx() as s:
        return list(s.scalars(UiSessionRow.__table__.select().with_only_columns(UiSessionRow.id)))


def production(services: Services) -> int:
    found = services.registry.aliases.find("iris", "production")
    assert found is not None
    return found.version


# ---- sign in and sessions --------------------------------------------------------------------------
def test_root_redirects_to_the_dashboard_and_pages_need_a_session(ui: TestClient) -> None:
    assert ui.get("/").headers["location"] == "/ui/"
    assert ui.get("/ui").headers["location"].endswith("/ui/")
    r = ui.get("/ui/models/iris?window=900")
    assert (
        r.status_code == 303
        and r.headers["location"] == "/ui/signin?next=%2Fui%2Fmodels%2Firis%3Fwindow%3D900"
    )
    assert ui.get("/ui/models/iris/monitoring.json").status_code == 401
    fragment = ui.get("/ui/models-table", headers={"HX-Request": "true"})
    assert fragment.status_code == 401 and fragment.headers["hx-redirect"] == "/ui/signin"
    page = ui.get("/ui/signin")
    assert page.status_code == 200 and 'name="key"' in page.text and '<label for="key">' in page.text


def test_sign_in_sets_a_strict_http_only_cookie(ui: TestClient, services: Services) -> None:
    r = ui.post("/ui/signin", data={"key": ADMIN_KEY, "next": "/ui/jobs"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/jobs"
    cookie = r.headers["set-cookie"]
    token = cookie.split(";")[0].split("=", 1)[1]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    assert session_rows(services) == [hashlib.sha256(token.encode()).hexdigest()]  # the token is not stored
    assert ui.get("/ui/jobs").status_code == 200
    # only a dashboard path is a place to go after signing in
    again = ui.post("/ui/signin", data={"key": ADMIN_KEY, "next": "https://evil.example/"})
    assert again.headers["location"] == "/ui/"
    assert len(session_rows(services)) == 1  # signing in again replaced the session


def test_the_cookie_is_secure_under_tls(services: Services) -> None:
    client = client_of(services, base_url="https://testserver")
    r = client.post("/ui/signin", data={"key": ADMIN_KEY})
    assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


def test_keys_that_cannot_sign_in_are_told_why(ui: TestClient, services: Services) -> None:
    r = ui.post("/ui/signin", data={"key": "mp_not-a-key-at-all-000000000"})
    assert r.status_code == 401 and "invalid or revoked API key" in r.text and "set-cookie" not in r.headers
    infer_only = new_key(services, "infer-only", ["infer"])
    r = ui.post("/ui/signin", data={"key": infer_only})
    assert r.status_code == 403 and "lacks the &#39;read&#39; scope" in r.text
    revoked = new_key(services, "gone", ["read"])
    services.keys.revoke("gone", by="test")
    assert ui.post("/ui/signin", data={"key": revoked}).status_code == 401
    assert session_rows(services) == []
    denied = services.registry.audit.query(action="auth.denied")
    assert len(denied) == 3 and {e.target for e in denied} == {"POST /ui/signin"}


def test_a_revoked_key_ends_its_session_at_once(ui: TestClient, services: Services) -> None:
    sign_in(ui, new_key(services, "viewer", ["read"]))
    assert ui.get("/ui/").status_code == 200
    services.keys.revoke("viewer", by="test")
    r = ui.get("/ui/")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/signin")
    assert session_rows(services) == []  # deleted on sight


def test_an_expired_session_is_refused_and_purged(ui: TestClient, services: Services) -> None:
    sign_in(ui)
    with services.registry.db.tx() as s:
        s.execute(update(UiSessionRow).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert ui.get("/ui/").status_code == 303
    assert session_rows(services) == []
    sign_in(ui)  # another one, expired, is purged by the registry
    with services.registry.db.tx() as s:
        s.execute(update(UiSessionRow).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert services.registry.sessions.purge() == 1


def test_sign_out_deletes_the_session(ui: TestClient, services: Services) -> None:
    csrf = sign_in(ui)
    token = ui.cookies.get("modelport_session")
    assert ui.post("/ui/signout", data={}).status_code == 403  # a form without the token
    r = ui.post("/ui/signout", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/ui/signin"
    assert 'modelport_session=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    assert session_rows(services) == []
    stale = client_of(services)
    stale.cookies.set("modelport_session", str(token), path="/ui")
    assert stale.get("/ui/").status_code == 303
    actions = [e.action for e in services.registry.audit.query(actor="admin")]
    assert actions == ["ui.signout", "auth.denied", "ui.signin"]  # the form without a token: refused


# ---- actions -----------------------------------------------------------------------------------------
def test_promote_and_roll_back_through_forms_use_the_api_path(iris: Services) -> None:
    ui = client_of(iris)
    csrf = sign_in(ui)
    page = ui.get("/ui/models/iris").text
    assert 'data-dialog="promote-2"' in page and "Promote v2" in page
    r = ui.post("/ui/models/iris/promote", data={"csrf": csrf, "version": "2", "alias": "production"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/models/iris?moved=production"
    assert production(iris) == 2
    assert "production now points at version 2" in ui.get(r.headers["location"]).text
    aliases = api_of(iris).get("/api/v1/models/iris/aliases").json()
    assert [(a["alias"], a["version"]) for a in aliases] == [("production", 2)]
    # the no-JavaScript confirmation pages hold the same forms
    confirm = ui.get("/ui/models/iris/aliases/production/rollback")
    assert confirm.status_code == 200 and "Roll back to v1" in confirm.text
    assert "Promote v1" in ui.get("/ui/models/iris/promote?version=1").text
    r = ui.post("/ui/models/iris/aliases/production/rollback", data={"csrf": csrf})
    assert r.status_code == 303 and production(iris) == 1
    moves = [(e.action, e.actor, e.details.get("version")) for e in iris.registry.audit.query(model="iris")]
    assert moves[:2] == [("alias.rollback", "admin", 1), ("alias.set", "admin", 2)]
    # a version that cannot be promoted: the page says why
    r = ui.post("/ui/models/iris/promote", data={"csrf": csrf, "version": "9", "alias": "production"})
    assert r.status_code == 404 and "not found" in r.text


def test_changes_need_the_csrf_token_and_an_allowed_origin(iris: Services) -> None:
    ui = client_of(iris)
    csrf = sign_in(ui)
    form = {"version": "2", "alias": "production"}
    assert ui.post("/ui/models/iris/promote", data=form).status_code == 403
    assert ui.post("/ui/models/iris/promote", data={**form, "csrf": "x" * 43}).status_code == 403
    evil = {"Origin": "http://evil.example"}
    assert ui.post("/ui/models/iris/promote", data={**form, "csrf": csrf}, headers=evil).status_code == 403
    assert ui.get("/ui/", headers={"Host": "evil.example"}).status_code == 403  # DNS rebinding
    assert production(iris) == 1
    reasons = [e.details["reason"] for e in iris.registry.audit.query(action="auth.denied")]
    assert reasons == ["forbidden"] * 4


def test_a_read_only_key_sees_no_actions_and_is_refused(iris: Services) -> None:
    ui = client_of(iris)
    csrf = sign_in(ui, new_key(iris, "reader", ["read"]))
    page = ui.get("/ui/models/iris")
    assert page.status_code == 200 and "Promote" not in page.text and "Roll back" not in page.text
    assert "Alias history" in page.text and "Audit trail" not in page.text
    assert ">Keys</a>" not in page.text and ">Audit log</a>" not in page.text
    r = ui.post("/ui/models/iris/promote", data={"csrf": csrf, "version": "2", "alias": "production"})
    assert r.status_code == 403 and "lacks the &#39;deploy&#39; scope" in r.text
    assert ui.post("/ui/models/iris/aliases/production/rollback", data={"csrf": csrf}).status_code == 403
    assert ui.get("/ui/models/iris/promote?version=2").status_code == 403
    assert ui.get("/ui/keys").status_code == 403 and ui.get("/ui/audit").status_code == 403
    assert ui.post("/ui/keys", data={"csrf": csrf, "name": "mine", "scopes": "admin"}).status_code == 403
    assert production(iris) == 1
    denied = iris.registry.audit.query(action="auth.denied", actor="reader")
    assert "POST /ui/models/iris/promote" in {e.target for e in denied}


def test_a_key_limited_to_models_sees_only_those(iris: Services) -> None:
    ui = client_of(iris)
    sign_in(ui, new_key(iris, "fraud-team", ["read", "deploy"], models="fraud-*"))
    models = ui.get("/ui/").text
    assert "iris" not in models and "No models yet that this key may see" in models
    assert ui.get("/ui/models/iris").status_code == 404
    assert ui.get("/ui/models/iris/monitoring.json").status_code == 404
    assert ui.get("/ui/models/iris/live").status_code == 404


def test_admins_create_and_revoke_keys_with_the_secret_shown_once(ui: TestClient, services: Services) -> None:
    csrf = sign_in(ui)
    r = ui.post(
        "/ui/keys",
        data={"csrf": csrf, "name": "ci", "scopes": ["read", "deploy"], "models": "iris*", "expires": ""},
    )
    assert r.status_code == 201, r.text
    secret = re.search(r'id="new-secret">([^<]+)<', r.text)
    assert secret is not None
    who = services.keys.authenticate(secret.group(1))
    assert who.scopes == {"read", "deploy"} and who.models == "iris*"
    assert secret.group(1) not in ui.get("/ui/keys").text  # shown once
    bad = ui.post("/ui/keys", data={"csrf": csrf, "name": "ci", "scopes": "read"})
    assert bad.status_code == 409 and "already exists" in bad.text
    assert ui.get("/ui/keys/ci/revoke").status_code == 200
    assert ui.post("/ui/keys/ci/revoke", data={"csrf": csrf}).status_code == 303
    assert next(k for k in services.registry.keys.all() if k.name == "ci").revoked_at is not None
    last = ui.post("/ui/keys/admin/revoke", data={"csrf": csrf})  # the last admin key stays
    assert last.status_code == 409 and "last active admin key" in last.text


def test_with_auth_off_the_dashboard_is_open_and_forms_carry_a_token(tmp_path: Path) -> None:
    services = make_services(tmp_path / "data", auth=False)
    try:
        ui = client_of(services)
        page = ui.get("/ui/")
        assert page.status_code == 200 and "anonymous" in page.text
        assert "httponly" in page.headers["set-cookie"].lower()  # the double-submit cookie
        token = ui.cookies.get("modelport_csrf")
        assert token and csrf_of(ui.get("/ui/keys").text) == token
        assert ui.post("/ui/keys", data={"name": "x", "scopes": "read"}).status_code == 403
        assert ui.post("/ui/keys", data={"csrf": token, "name": "x", "scopes": "read"}).status_code == 201
        assert ui.get("/ui/signin").headers["location"] == "/ui/"
    finally:
        services.close()


# ---- pages and data ------------------------------------------------------------------------------------
def test_charts_json_follows_traffic(iris: Services) -> None:
    ui = client_of(iris)
    sign_in(ui)
    empty = ui.get("/ui/models/iris/monitoring.json").json()
    assert empty["available"] and empty["points"] == 0
    api = api_of(iris)
    for _ in range(5):
        assert api.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 200
    data = ui.get("/ui/models/iris/monitoring.json?window=900").json()
    assert data["window"] == 900 and data["points"] >= 1
    assert data["traffic"]["labels"] == ["v1 (production)"]
    assert data["latency"]["labels"] == ["v1 p50", "v1 p99"]
    assert len(data["x"]) == len(data["traffic"]["series"][0]) == len(data["latency"]["series"][1])
    assert sum(v for v in data["traffic"]["series"][0] if v) > 0
    page = ui.get("/ui/models/iris").text
    assert 'data-src="/ui/models/iris/monitoring.json?window=3600"' in page
    live = ui.get("/ui/models/iris/live?window=900", headers={"HX-Request": "true"})
    assert live.status_code == 200 and 'id="model-stats"' in live.text and 'hx-swap-oob="true"' in live.text
    table = ui.get("/ui/models-table").text
    assert ">5<" in table.replace("\u202f", "")  # requests in the last hour


def test_pages_render_and_carry_security_headers(iris: Services) -> None:
    ui = client_of(iris)
    sign_in(ui)
    for path in (
        "/ui/",
        "/ui/models/iris",
        "/ui/audit?model=iris",
        "/ui/keys",
        "/ui/jobs",
        "/ui/jobs?state=queued",
    ):
        r = ui.get(path)
        assert r.status_code == 200, (path, r.text)
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    assert "alias.set" in ui.get("/ui/audit?action=alias.set").text
    assert ui.get("/ui/audit?model=Not%20A%20Name").status_code == 400
    assert ui.get("/ui/jobs/12345").status_code == 404
    assert ui.get("/ui/nowhere").status_code == 404
    for asset in (
        "app.css",
        "app.js",
        "vendor/htmx.min.js",
        "vendor/uPlot.iife.min.js",
        "vendor/uPlot.min.css",
    ):
        r = ui.get(f"/ui/static/{asset}")
        assert r.status_code == 200 and r.headers["cache-control"].startswith("public"), asset
    page = ui.get("/ui/").text
    assert "http://" not in page.replace("http://testserver", "") and "https://" not in page  # no CDN


@pytest.fixture
def services_with_job(services: Services) -> Iterator[Services]:
    spec = {
        "request": {"estimator": "random_forest", "target": "target", "dataset": "sklearn:iris"},
        "task": "classification",
        "features": ["a", "b"],
        "metric": "accuracy",
        "dataset": {"name": "sklearn:iris", "version": None, "sha256": None, "rows": 150},
    }
    services.registry.jobs.submit(
        kind="train", model="iris", dataset="sklearn:iris", dataset_version=None, spec=spec, by="admin"
    )
    yield services


def test_jobs_pages_show_state_and_progress(services_with_job: Services) -> None:
    ui = client_of(services_with_job)
    csrf = sign_in(ui)
    jobs = ui.get("/ui/jobs").text
    assert "#1" in jobs and "queued" in jobs and "random_forest" in jobs
    job = ui.get("/ui/jobs/1")
    assert job.status_code == 200 and "Cancel job" in job.text and 'hx-trigger="every 2s"' in job.text
    assert ui.post("/ui/jobs/1/cancel", data={"csrf": csrf}).status_code == 303
    assert services_with_job.registry.jobs.get(1).state.value == "cancelled"
    assert 'hx-trigger="every 2s"' not in ui.get("/ui/jobs/1/live").text  # final: it stops refreshing
