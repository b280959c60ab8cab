"""Build the ASGI application from already-constructed services."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import swagger_ui_bundle
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, RedirectResponse, Response

from modelport import __version__, ui
from modelport.api import management, openai, v2
from modelport.api.auth import Authenticator, GuardedAuth
from modelport.api.inference import InferenceFastPath, InferenceHandler
from modelport.api.surfaces import MANAGEMENT, OPENAI, V2, RootApp
from modelport.security.hosts import allowed_hosts
from modelport.security.keys import Scope
from modelport.serving.dataplane import DataPlane
from modelport.serving.memory import freeze_long_lived

if TYPE_CHECKING:
    from modelport.server import Services

log = logging.getLogger("modelport.api")


def create_app(services: Services, on_shutdown: Callable[[], None] | None = None) -> InferenceFastPath:
    settings, dataplane = services.settings, services.dataplane
    auth = Authenticator(services.keys, settings.auth)
    dataplane.on_keys_changed.append(auth.forget)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        freeze_long_lived()  # see its docstring: this is what keeps full collections off the p99
        reconciler = asyncio.create_task(_reconcile_forever(dataplane, settings.reconcile_interval))
        services.jobs.start()
        services.monitoring.start()
        try:
            yield
        finally:
            reconciler.cancel()
            if on_shutdown is not None:
                await asyncio.to_thread(on_shutdown)

    app = RootApp(
        lifespan=lifespan,
        title="modelport",
        version=__version__,
        description=(
            "Model-as-a-service: Open Inference Protocol v2, an OpenAI-compatible API and a management API."
        ),
        docs_url=None,
        redoc_url=None,
    )
    handler = InferenceHandler(dataplane, auth, settings.max_request_bytes, settings.max_tensor_elements)
    app.mount_surface(V2, v2.build_app(dataplane, handler))
    # OpenAI clients are no browsers: plain key auth, as V2
    app.mount_surface(OPENAI, openai.build_app(dataplane, auth, settings.max_request_bytes))
    guarded = GuardedAuth(auth, allowed_hosts(settings.host, settings.allowed_hosts))
    app.mount_surface(MANAGEMENT, management.build_app(services, guarded))
    # the dashboard (modelport.ui): its own sessions over the same keys, Host/Origin checks and audit
    app.mount("/ui", ui.build_app(services, guarded), name="ui")
    app.add_api_route("/", lambda: RedirectResponse("/ui/", status_code=307), include_in_schema=False)
    metrics = dataplane.cache.metrics

    @app.get("/metrics", include_in_schema=False)
    def prometheus(request: Request) -> Response:
        auth.principal(request, Scope.READ)  # Prometheus: authorization: {credentials: <key>}
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # Swagger UI from the swagger-ui-bundle package, so /docs works with no internet access.
    assets = Path(swagger_ui_bundle.swagger_ui_path)
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="modelport API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    return InferenceFastPath(app, handler, settings.max_header_bytes, app.errors_for)


async def _reconcile_forever(dataplane: DataPlane, interval: float) -> None:
    """Follow registry changes made by other processes (alias moves, revocations, deletions)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(dataplane.reconcile)
        except Exception:  # a registry hiccup must not end the loop
            log.exception("reconcile failed")
