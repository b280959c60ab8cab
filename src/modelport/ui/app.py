"""The dashboard's ASGI app, mounted at ``/ui``: server-rendered pages (Jinja2), htmx fragments and one
JSON endpoint per model for its charts; every asset is served from ``static/`` (nothing from a CDN).

Routes (under ``/ui``):

- ``GET /``, ``GET /models/{m}`` (with ``/live`` fragment and ``/monitoring.json``): read
- ``GET|POST /models/{m}/promote``, ``GET|POST /models/{m}/aliases/{a}/rollback``: deploy
- ``GET /jobs``, ``GET /jobs/{id}`` (with fragments): read; ``POST /jobs/{id}/cancel``: write
- ``GET /audit``: admin (as ``/api/v1/audit``); ``GET|POST /keys``, ``GET|POST /keys/{k}/revoke``: admin
- ``GET|POST /signin``, ``POST /signout``; ``/static/...``

A GET shows a confirmation page for each action; with JavaScript the same form opens in a ``<dialog>``.
Blocking registry and service calls run in the thread pool.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelport import __version__
from modelport.api.auth import GuardedAuth
from modelport.api.errors import status_of
from modelport.errors import Forbidden, InvalidInput, ModelportError, PayloadTooLarge
from modelport.names import check_name
from modelport.security.keys import Scope as KeyScope
from modelport.ui import actions, pages
from modelport.ui.access import DashboardAuth, SignInRequired, Viewer
from modelport.ui.views import FILTERS, WINDOWS, Report, flat_metrics, parse_report

if TYPE_CHECKING:
    from modelport.server import Services

log = logging.getLogger("modelport.ui")
HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
MAX_FORM_BYTES = 64 * 1024
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class Form:
    """An ``application/x-www-form-urlencoded`` body (the dashboard's forms post nothing else)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.pairs if k == name), default)

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


class Dashboard:
    """What every page needs: the services, the dashboard's auth, the templates."""

    def __init__(self, services: Services, auth: DashboardAuth) -> None:
        self.services = services
        self.registry = services.registry
        self.auth = auth
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(FILTERS)
        self.env.globals.update(
            Scope=KeyScope,
            WINDOWS=WINDOWS,
            version=__version__,
            asset=self.asset,
            urlencode=urlencode,
            now=lambda: datetime.now(UTC),
            flat_metrics=flat_metrics,
        )
        self._assets = _asset_versions()

    def asset(self, root: str, path: str) -> str:
        return f"{root}/static/{path}?v={self._assets.get(path, __version__)}"

    # ---- the viewer -----------------------------------------------------------------------------
    async def viewer(self, request: Request, *scopes: KeyScope) -> Viewer:
        viewer = await run_in_threadpool(self.auth.viewer, request)
        request.state.viewer = viewer  # a refusal below is audited under its name
        self.auth.admit(viewer, *scopes)
        return viewer

    async def form(self, request: Request, viewer: Viewer) -> Form:
        """The posted form, after its CSRF token was checked."""
        form = await self.read_form(request)
        self.auth.check_csrf(viewer, form.get("csrf") or request.headers.get("x-csrf-token"))
        return form

    async def read_form(self, request: Request) -> Form:
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return Form([])  # not one of the dashboard's forms: no fields, so no CSRF token either
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise PayloadTooLarge("form too large")
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=64)
        except (UnicodeDecodeError, ValueError):
            raise InvalidInput("malformed form") from None
        return Form(pairs)

    def model_name(self, viewer: Viewer, model: str) -> str:
        check_name(model, field="model")
        viewer.who.require_model(model)  # a model the key may not see does not exist for it
        return model

    # ---- monitoring -----------------------------------------------------------------------------
    def report(self, model: str, window: int, *, details: bool = True) -> Report | None:
        """The model's monitoring report (blocking; ``details``: with quality and drift); None when
        monitoring cannot answer."""
        try:
            return parse_report(self.services.monitoring.report(model, window, details=details))
        except Exception:  # the page still shows the registry's view
            log.exception("monitoring report of %r failed", model)
            return None

    # ---- answers --------------------------------------------------------------------------------
    def render(
        self,
        request: Request,
        template: str,
        viewer: Viewer | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        root = str(request.scope.get("root_path") or "")
        html = self.env.get_template(template).render(
            request=request, root=root, viewer=viewer, auth_enabled=self.auth.enabled, **context
        )
        response = HTMLResponse(html, status_code=status)
        if viewer is not None:
            self.auth.set_csrf_cookie(request, response, viewer)
        return response

    def redirect(self, request: Request, path: str, **query: str) -> RedirectResponse:
        root = str(request.scope.get("root_path") or "")
        suffix = f"?{urlencode(query)}" if query else ""
        return RedirectResponse(f"{root}{path}{suffix}", status_code=303)


def _asset_versions() -> dict[str, str]:
    """A short content hash per static file, so that a changed file has a new URL."""
    versions = {}
    for path in STATIC.rglob("*"):
        if path.is_file():
            versions[path.relative_to(STATIC).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    return versions


# ---- errors ----------------------------------------------------------------------------------------
def _wants_json(request: Request) -> bool:
    return request.url.path.endswith(".json")


def _is_fragment(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def error_handlers(ui: Dashboard) -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    async def sign_in(request: Request, _: Exception) -> Response:
        root = str(request.scope.get("root_path") or "")
        target = f"{root}/signin"
        if request.method == "GET" and not _wants_json(request) and not _is_fragment(request):
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target += f"?{urlencode({'next': path})}"
        if _wants_json(request):
            return JSONResponse({"error": "sign in again"}, status_code=401)
        if _is_fragment(request):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ModelportError)
        status = status_of(exc)
        viewer = getattr(request.state, "viewer", None)
        if isinstance(exc, Forbidden):
            actor = viewer.name if viewer is not None else "anonymous"
            await run_in_threadpool(ui.auth.denied, request, actor, exc.code)
        if _wants_json(request):
            return JSONResponse({"error": exc.message}, status_code=status)
        headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else None
        response = ui.render(request, "error.html", viewer, status, status_code=status, message=exc.message)
        if headers:
            response.headers.update(headers)
        return response

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "There is no such page.", 405: "That method is not allowed here."}
        text = message.get(exc.status_code, str(exc.detail))
        if _wants_json(request):
            return JSONResponse({"error": text}, status_code=exc.status_code)
        viewer = getattr(request.state, "viewer", None)
        return ui.render(request, "error.html", viewer, exc.status_code, status_code=exc.status_code,
                         message=text)  # fmt: skip

    return {SignInRequired: sign_in, ModelportError: domain_error, HTTPException: http_error}


# ---- headers ---------------------------------------------------------------------------------------
class SecurityHeaders:
    """Every answer of the dashboard: a strict CSP (no inline script or style, same-origin only), no
    framing, no sniffing; pages are not cached, static assets are (their URLs carry a content hash)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root = str(scope.get("root_path") or "")
        static = str(scope.get("path", "")).startswith(f"{root}/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"cache-control"]
                cache = b"public, max-age=86400" if static else b"no-store"
                message["headers"] = [*headers, *SECURITY_HEADERS, (b"cache-control", cache)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_app(services: Services, guarded: GuardedAuth) -> ASGIApp:
    auth = DashboardAuth(guarded, services.registry, services.settings.ui_session_seconds)
    ui = Dashboard(services, auth)
    routes = [
        *pages.routes(ui),
        *actions.routes(ui),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers=error_handlers(ui))
    return SecurityHeaders(app)
