"""The public HTTP surfaces: each one a FastAPI sub-app mounted at its prefix, with its own error shape.

A surface is declared once, in the table below: its prefix and its error encoder. Its module builds a
sub-app from ``Surface.app()`` (which installs that encoder as the sub-app's only error handling) with
routes that depend on the surface's own auth, and ``RootApp.mount_surface`` mounts it. A surface is one
line here, one body function in ``api/errors.py`` and one mounted sub-app: V2 (``api/v2.py``), management
(``api/management``), OpenAI (``/v1``, ``{"error": {"message", "type", "param", "code"}}``,
``api/openai.py``). The dashboard (``/ui``, ``modelport/ui``) is HTML, not a surface: a plain mount
beside them.

The root app keeps what belongs to no surface (``/metrics``, ``/docs``, ``/openapi.json``) and serves one
OpenAPI document: the sub-apps' documents merged under their prefixes, each documenting its own error
shape, the statuses it answers and which operations need a key (``api/openapi.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette._utils import get_route_path
from starlette.routing import Match, Mount
from starlette.types import Scope

from modelport.api import openapi
from modelport.api.errors import (
    ErrorEncoder,
    install_error_handlers,
    management_body,
    openai_body,
    v2_body,
)


@dataclass(frozen=True)
class Surface:
    """Where a surface is mounted, how it writes errors and how its documentation describes them:
    ``error_model`` documents the error body, ``public`` lists the paths that need no key,
    ``strict_paths`` says that names in its paths are checked (a bad one answers 400) and
    ``by_suffix`` adds statuses to every path with that ending."""

    prefix: str
    errors: ErrorEncoder
    error_model: type[BaseModel]
    public: tuple[str, ...] = ()
    strict_paths: bool = False
    by_suffix: tuple[tuple[str, int], ...] = ()

    def app(self, tags: Sequence[str] = ()) -> SurfaceApp:
        """An empty sub-app for this surface, documented through the root's ``/openapi.json``; ``tags``
        apply to every route declared on it."""
        app = SurfaceApp(
            self,
            openapi_url=None,
            docs_url=None,
            redoc_url=None,
            generate_unique_id_function=partial(operation_id, self.prefix),
        )
        app.router.tags = list(tags)
        install_error_handlers(app, self.errors)
        return app


class SurfaceApp(FastAPI):
    """A surface's sub-app. Its document says what the surface answers (``openapi.document``);
    ``doc_models`` are schemas its routes reference by hand (bodies no pydantic model decodes)."""

    def __init__(self, surface: Surface, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.surface = surface
        self.doc_models: list[type[BaseModel]] = []

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema:
            return self.openapi_schema
        doc = super().openapi()  # caches itself in openapi_schema: rewritten in place once
        openapi.add_schemas(doc, self.doc_models)
        surface = self.surface
        return openapi.document(
            doc, surface.error_model, surface.public, surface.strict_paths, surface.by_suffix
        )


V2 = Surface(
    "/v2",
    ErrorEncoder(v2_body),
    openapi.V2Error,
    public=("", "/health/live", "/health/ready"),
    by_suffix=(("}/ready", 503),),  # a model's readiness answers 503 when it cannot serve
)
OPENAI = Surface("/v1", ErrorEncoder(openai_body), openapi.OpenAIError)
MANAGEMENT = Surface("/api/v1", ErrorEncoder(management_body), openapi.ManagementError, strict_paths=True)
OUTSIDE = MANAGEMENT.errors  # paths of no surface (/metrics, /docs, unknown ones) answer like management


def operation_id(prefix: str, route: APIRoute) -> str:
    """FastAPI's default operation id, computed on the full path (the same ids as before the mounts)."""
    assert route.methods
    name = re.sub(r"\W", "_", f"{route.name}{prefix}{route.path_format}")
    return f"{name}_{min(route.methods).lower()}"


class SurfaceMount(Mount):
    """The mount of one surface. Its bare prefix goes to the sub-app's ``""`` route (``GET /v2``); the
    prefix with a slash is then left to the root, which redirects it there."""

    def __init__(self, surface: Surface, app: FastAPI) -> None:
        super().__init__(surface.prefix, app=app)
        self.surface = surface
        self.sub_app = app
        self.bare_route = any(getattr(route, "path", None) == "" for route in app.routes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            path = get_route_path(scope)
            if path == self.path:
                root_path = scope.get("root_path", "")
                return Match.FULL, {
                    "path_params": dict(scope.get("path_params", {})),
                    "app_root_path": scope.get("app_root_path", root_path),
                    "root_path": root_path + self.path,
                    "endpoint": self.app,
                }
            if self.bare_route and path == self.path + "/":
                return Match.NONE, {}
        return super().matches(scope)

    def owns(self, scope: Scope) -> bool:
        """Whether the request's path is under this surface's prefix (whether or not a route matches)."""
        path = get_route_path(scope)
        return path == self.path or path.startswith(self.path + "/")


class RootApp(FastAPI):
    """The ASGI app behind the inference fast path: the mounted surfaces, plus /metrics and /docs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        install_error_handlers(self, OUTSIDE)

    def mount_surface(self, surface: Surface, app: FastAPI) -> None:
        self.router.routes.append(SurfaceMount(surface, app))
        self.openapi_schema = None

    @property
    def surfaces(self) -> list[SurfaceMount]:
        return [route for route in self.router.routes if isinstance(route, SurfaceMount)]

    def errors_for(self, scope: Scope) -> ErrorEncoder:
        """The error encoder of the surface a request's path belongs to, from the same mounts that route
        it (for answers given before any framework code runs, such as the fast path's 431)."""
        for mount in self.surfaces:
            if mount.owns(scope):
                return mount.surface.errors
        return OUTSIDE

    def openapi(self) -> dict[str, Any]:
        """The root's document with every surface's paths under its prefix, and their components."""
        if self.openapi_schema:
            return self.openapi_schema
        schema = super().openapi()  # info, and the root's own documented routes (caches itself)
        paths = schema.setdefault("paths", {})
        components: dict[str, dict[str, Any]] = schema.setdefault("components", {})
        for mount in self.surfaces:
            sub = mount.sub_app.openapi()
            for path, item in sub.get("paths", {}).items():
                paths[mount.path + path] = item
            for kind, entries in sub.get("components", {}).items():
                merged = components.setdefault(kind, {})
                for name, definition in entries.items():
                    if merged.setdefault(name, definition) != definition:
                        raise ValueError(f"two surfaces define the OpenAPI component {name!r} differently")
        if not components:
            del schema["components"]
        return schema
