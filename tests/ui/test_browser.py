"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright; no browser is
downloaded) against a real ``modelport serve --demo``: sign in with the keyboard, the demo models,
promote and roll back through the page's dialogs (checked through the API), a chart that fills after
traffic without a reload, refusals for keys without the scope, CSRF, cookie flags and phone width.

Screenshots of the main pages go to ``build/screenshots/`` (full page); the docs' images in
``docs/images/`` were picked from them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import fixtures
from tests.conftest import RunningServer

CHROMIUM = Path(os.environ.get("MODELPORT_TEST_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (make browser) for the dashboard's browser tests",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "build" / "screenshots"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
IRIS = fixtures.IRIS_X


class Demo:
    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.url = server.url
        self.key = (server.data_dir / "admin.key").read_text().strip()
        self.api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )

    def aliases(self, model: str) -> dict[str, int]:
        r = self.api.get(f"/api/v1/models/{model}/aliases")
        assert r.status_code == 200, r.text
        return {a["alias"]: a["version"] for a in r.json()}

    def key_with(self, name: str, scopes: list[str]) -> str:
        r = self.api.post("/api/v1/keys", json={"name": name, "scopes": scopes})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    def infer(self, model: str, row: list[float], ref: str | None = None) -> httpx.Response:
        path = f"/v2/models/{model}" + (f"/versions/{ref}" if ref else "") + "/infer"
        body = {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}
        r = self.api.post(path, json=body)
        assert r.status_code == 200, r.text
        return r


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    env = {
        "MODELPORT_ADMIN_KEY": "",  # the generated key, in <data>/admin.key
        "MODELPORT_DEMO_CHAT_SECONDS": "3",
        "MODELPORT_DEMO_CACHE": str(tmp_path_factory.mktemp("demo-chat-cache")),
        "MODELPORT_STATS_BUCKET_SECONDS": "1",  # charts fill within a second or two
        "MODELPORT_ALERT_INTERVAL": "1",
    }
    server = RunningServer(tmp_path_factory.mktemp("ui-demo") / "data", extra_env=env, args=("--demo",))
    running = Demo(server)
    yield running
    running.api.close()
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def iris_v2(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """A second iris version, ready (production stays at 1)."""
    path = fixtures.write_skops(fixtures.iris_forest(), tmp_path_factory.mktemp("iris") / "iris.skops")
    r = demo.api.post(
        "/api/v1/models/iris/versions",
        content=path.read_bytes(),
        params={"filename": path.name},
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201 and r.json()["version"] == 2 and r.json()["state"] == "ready", r.text
    return demo


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def signed_in(browser: Any, demo: Demo, key: str | None = None, viewport: dict[str, int] = DESKTOP) -> Any:
    context = browser.new_context(viewport=viewport, base_url=demo.url)
    page = context.new_page()
    page.problems = []  # console errors: a refused script or style would show here
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.goto("/ui/signin")
    page.fill("#key", key or demo.key)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/")
    return page


def wait_until(page: Any, script: str, timeout: float = 30) -> Any:
    """Poll ``script`` until it is truthy (``page.wait_for_function`` evaluates strings with eval, which
    the dashboard's Content-Security-Policy refuses, rightly)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(script)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {script}"
        time.sleep(0.2)


def csrf_of(page: Any) -> str:
    return str(page.locator("input[name=csrf]").first.get_attribute("value"))


def no_horizontal_overflow(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


# ---- the tests ------------------------------------------------------------------------------------------
def test_sign_in_with_the_keyboard_and_see_the_demo_models(browser: Any, demo: Demo) -> None:
    context = browser.new_context(viewport=DESKTOP, base_url=demo.url)
    page = context.new_page()
    page.goto("/")  # -> /ui/ -> the sign-in page
    assert page.url.endswith("/ui/signin?next=%2Fui%2F")
    shot(page, "signin")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(4):  # the skip link, then the key field
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "key":
            break
    assert page.evaluate("document.activeElement.id") == "key"
    page.keyboard.type(demo.key)
    page.keyboard.press("Tab")
    assert (
        page.evaluate("document.activeElement.tagName + ':' + document.activeElement.type") == "BUTTON:submit"
    )
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/")
    names = page.locator("a.model-name").all_inner_texts()
    assert {"iris", "breast-cancer", "breast-cancer-onnx", "wine-xgboost", "diabetes-lightgbm"} <= set(names)
    cookie = next(c for c in context.cookies() if c["name"] == "modelport_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert not cookie["secure"]  # plain HTTP here; over TLS it is Secure (test_dashboard.py)
    shot(page, "models")
    context.close()


def test_promote_and_roll_back_through_the_page(browser: Any, iris_v2: Demo) -> None:
    demo = iris_v2
    assert demo.aliases("iris") == {"production": 1}
    page = signed_in(browser, demo)
    page.goto("/ui/models/iris")
    # the dialog is keyboard-operable: it opens on Enter, Escape closes it without a change
    page.locator('a[data-dialog="promote-2"]').focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#promote-2")
    assert dialog.is_visible()
    page.keyboard.press("Escape")
    assert not dialog.is_visible() and demo.aliases("iris") == {"production": 1}
    page.click('a[data-dialog="promote-2"]')
    assert page.locator("#promote-2-alias").input_value() == "production"
    shot(page, "model-promote-dialog", full_page=False)  # a modal dialog sits in the viewport
    dialog.get_by_role("button", name="Promote v2").click()
    page.wait_for_url("**/ui/models/iris?moved=production")
    assert "production now points at version 2" in page.locator(".notice").inner_text()
    assert demo.aliases("iris") == {"production": 2}  # through the API
    page.click('a[data-dialog="rollback-production"]')
    page.locator("dialog#rollback-production").get_by_role("button", name="Roll back to v1").click()
    page.wait_for_url("**/ui/models/iris?moved=production")
    assert demo.aliases("iris") == {"production": 1}
    page.context.close()


def test_a_chart_fills_after_traffic_without_a_reload(browser: Any, iris_v2: Demo) -> None:
    demo = iris_v2
    page = signed_in(browser, demo)
    page.goto("/ui/models/iris?window=900")
    wait_until(page, "document.querySelector('[data-live-charts]').dataset.updated")
    page.evaluate("window.__sameDocument = true")
    requests = "document.querySelector('#model-stats .stat:nth-child(2) .value').textContent.trim()"
    before = page.evaluate(requests)
    for i in range(30):
        demo.infer("iris", IRIS[i].tolist(), ref="2")
        demo.infer("iris", IRIS[i + 50].tolist())
    wait_until(
        page,
        "(() => { const c = window.modelportCharts[0].last;"
        " return c && c.traffic.labels.some(l => l.startsWith('v2')) && c.points > 0; })()",
    )
    wait_until(page, f"{requests} !== {before!r}", timeout=20)  # htmx refreshes the figures too
    assert page.evaluate("window.__sameDocument") is True  # refreshed in place, not reloaded
    assert int(page.locator("#chart-traffic").get_attribute("data-points") or 0) > 0
    assert int(page.locator("#chart-latency").get_attribute("data-points") or 0) > 0
    # uPlot holds the data it draws: versions 1 and 2 both answered
    drawn = page.evaluate(
        "window.modelportCharts[0].charts[0].plot.data.slice(1).map(s => s.some(v => v > 0))"
    )
    assert drawn == [True, True]
    assert page.problems == []  # nothing refused by the CSP, no script errors
    page.context.close()


def test_keys_without_the_scope_are_refused(browser: Any, iris_v2: Demo) -> None:
    demo = iris_v2
    infer_only = demo.key_with("browser-infer", ["infer"])
    context = browser.new_context(viewport=DESKTOP, base_url=demo.url)
    page = context.new_page()
    page.goto("/ui/signin")
    page.fill("#key", infer_only)
    page.click("button[type=submit]")
    assert "lacks the 'read' scope" in page.locator("#signin-error").inner_text()
    assert not [c for c in context.cookies() if c["name"] == "modelport_session"]
    context.close()

    page = signed_in(browser, demo, demo.key_with("browser-reader", ["read"]))
    page.goto("/ui/models/iris")
    assert page.locator("h2", has_text="Versions").count() == 1  # the page is there, without its actions
    assert page.locator("a[data-dialog], dialog, form[action*=promote], form[action*=rollback]").count() == 0
    assert page.locator("nav.site-nav a", has_text="Keys").count() == 0
    forged = page.request.post(
        "/ui/models/iris/promote", form={"csrf": csrf_of(page), "version": "2", "alias": "production"}
    )
    assert forged.status == 403 and "deploy" in forged.text()
    assert page.request.get("/ui/keys").status == 403
    assert demo.aliases("iris") == {"production": 1}
    page.context.close()


def test_forms_without_the_csrf_token_are_refused(browser: Any, iris_v2: Demo) -> None:
    demo = iris_v2
    page = signed_in(browser, demo)
    form = {"version": "2", "alias": "production"}
    assert page.request.post("/ui/models/iris/promote", form=form).status == 403
    assert page.request.post("/ui/models/iris/promote", form={**form, "csrf": "forged" * 8}).status == 403
    assert demo.aliases("iris") == {"production": 1}
    page.context.close()


def test_pages_fit_a_phone(browser: Any, demo: Demo) -> None:
    page = signed_in(browser, demo, viewport=PHONE)
    assert no_horizontal_overflow(page)
    shot(page, "models-phone")
    for path in ("/ui/models/iris", "/ui/jobs", "/ui/audit", "/ui/keys"):
        page.goto(path)
        assert no_horizontal_overflow(page), path
    page.goto("/ui/models/iris")
    shot(page, "model-phone")
    page.context.close()


def test_monitoring_panels_jobs_audit_and_keys(browser: Any, iris_v2: Demo) -> None:
    """Drift per feature, live accuracy and a firing alert on the model page (a reference from the
    dataset, logged predictions with shifted inputs, fed-back labels); a training job's pages."""
    demo = iris_v2
    api = demo.api
    assert api.put("/api/v1/models/iris/monitoring/config", json={"sample_rate": 1.0}).status_code == 200
    r = api.put(
        "/api/v1/models/iris/versions/1/reference", json={"dataset": "sklearn:iris", "target": "target"}
    )
    assert r.status_code == 200, r.text
    assert api.post("/api/v1/models/iris/alerts", json={"kind": "p99", "threshold": 1e-6}).status_code == 201
    job = api.post(
        "/api/v1/jobs",
        json={
            "model": "iris-trained",
            "dataset": "sklearn:iris",
            "target": "target",
            "estimator": "random_forest",
            "params": {"n_estimators": 20},
            "promote": {"alias": "production"},
        },
    )
    assert job.status_code == 202, job.text
    time.sleep(1.5)  # the sample rate reaches the serving process within a second
    feedback = []
    for i in range(0, 150, 2):
        row = IRIS[i].tolist()
        row[2] += 2.5  # petal length drifts
        request_id = demo.infer("iris", row).headers["x-request-id"]
        feedback.append({"request_id": request_id, "label": int(fixtures.IRIS_Y[i])})
    time.sleep(3)  # the prediction log is flushed every 2 s
    assert api.post("/api/v1/models/iris/feedback", json=feedback).status_code == 200

    page = signed_in(browser, demo)
    deadline = time.monotonic() + 60
    while True:
        page.goto("/ui/models/iris")
        drifted = page.locator("#model-health tr", has_text="petal length").count()
        firing = page.locator("#model-stats .badge", has_text="firing").count()
        if (drifted and firing) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert drifted, "no drift per feature on the model page"
    assert firing, "the p99 alert does not fire on the model page"
    assert page.locator("#quality-heading + .table-wrap td", has_text="accuracy").count() == 1
    page.goto("/ui/models/iris?window=900")
    wait_until(page, "Number(document.querySelector('#chart-traffic').dataset.points) > 0")
    shot(page, "model")

    job_id = job.json()["id"]
    deadline = time.monotonic() + 180
    while api.get(f"/api/v1/jobs/{job_id}").json()["state"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, "the training job did not finish"
        time.sleep(1)
    page.goto(f"/ui/jobs/{job_id}")
    assert page.locator("#job-live .badge").first.inner_text().endswith("succeeded")
    shot(page, "job")
    page.goto("/ui/jobs")
    assert page.locator("#jobs-live tbody tr").count() >= 1
    shot(page, "jobs")
    page.goto("/ui/models/iris-trained")
    assert page.locator(f'.lineage a[href="/ui/jobs/{job_id}"]').count() == 1  # lineage: the job
    shot(page, "model-trained")
    page.goto("/ui/audit?model=iris")
    assert page.locator("td a", has_text="alias.rollback").count() >= 1
    shot(page, "audit")
    page.goto("/ui/keys")
    shot(page, "keys")
    page.context.close()
