"""Open Inference Protocol (v2) REST routes, with the model repository and binary tensor extensions.

The ``/v2`` surface: a sub-app with V2's error shape (``{"error": "..."}``) and plain key auth (no
Host/Origin check: health probes and inference clients call it by any name).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelport import __version__
from modelport.api.inference import InferenceHandler, read_body, version_ref
from modelport.api.openapi import errors
from modelport.api.surfaces import V2
from modelport.api.v2_docs import INFER_DOC, INFER_RESPONSES, InferenceRequest
from modelport.errors import NotReady
from modelport.registry import VersionState
from modelport.security.keys import Scope
from modelport.serving.dataplane import DataPlane

EXTENSIONS = ["binary_tensor_data", "model_repository"]


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def build_app(dataplane: DataPlane, handler: InferenceHandler) -> FastAPI:
    """The ``/v2`` sub-app; ``handler`` answers inference here and in the fast path."""
    auth, max_body = handler.auth, handler.max_body
    app = V2.app(tags=["Open Inference Protocol v2"])
    app.doc_models.append(InferenceRequest)  # the infer body, documented by hand (decoded raw)
    reader = (Scope.INFER, Scope.READ)

    @app.get("")
    async def server_metadata() -> Response:
        return _json({"name": "modelport", "version": __version__, "extensions": EXTENSIONS})

    @app.get("/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/health/ready")
    async def ready() -> Response:
        await run_in_threadpool(dataplane.registry.models.list_models)  # the registry answers
        return _json({"ready": True})

    def metadata(request: Request, model: str, version: str | None) -> Response:
        auth.principal(request, *reader).require_model(model)
        record = dataplane.resolve(model, version_ref(model, version))
        if record.state is not VersionState.READY:
            raise NotReady(f"version {record.version} of {model!r} is {record.state.value}")
        signature = record.signature or {}
        versions = (
            [str(v.version) for v in dataplane.registry.models.list_versions(model, state=VersionState.READY)]
            if version is None
            else [str(record.version)]
        )
        return _json(
            {
                "name": model,
                "versions": versions,
                "platform": record.framework,
                "inputs": signature.get("inputs", []),
                "outputs": signature.get("outputs", []),
                "parameters": {
                    "model_version": str(record.version),
                    **dataplane.cache.policy_for(record).as_dict(),
                    **dataplane.cache.placement(record),
                },
            }
        )

    @app.get("/models/{model}", responses=errors(503))
    def model_metadata(request: Request, model: str) -> Response:
        return metadata(request, model, None)

    @app.get("/models/{model}/versions/{version}", responses=errors(503))
    def version_metadata(request: Request, model: str, version: str) -> Response:
        return metadata(request, model, version)

    def readiness(request: Request, model: str, version: str | None) -> Response:
        auth.principal(request, *reader).require_model(model)
        record = dataplane.ready_version(model, version_ref(model, version))
        return _json({"name": model, "version": str(record.version), "ready": True})

    @app.get("/models/{model}/ready")
    def model_ready(request: Request, model: str) -> Response:
        return readiness(request, model, None)

    @app.get("/models/{model}/versions/{version}/ready")
    def version_ready(request: Request, model: str, version: str) -> Response:
        return readiness(request, model, version)

    async def infer(request: Request, model: str, version: str | None) -> Response:
        # Normally answered by InferenceFastPath before FastAPI sees it; these routes document the API.
        status, headers, payload = await handler.respond(
            model, version, lambda: read_body(request.headers, request.receive, max_body), request.headers
        )
        return Response(payload, status_code=status, headers={k.decode(): v.decode() for k, v in headers})

    @app.post("/models/{model}/infer", openapi_extra=INFER_DOC, responses=INFER_RESPONSES)
    async def model_infer(request: Request, model: str) -> Response:
        return await infer(request, model, None)

    @app.post("/models/{model}/versions/{version}/infer", openapi_extra=INFER_DOC, responses=INFER_RESPONSES)
    async def version_infer(request: Request, model: str, version: str) -> Response:
        return await infer(request, model, version)

    @app.post("/repository/index")
    def repository_index(request: Request) -> Response:
        who = auth.principal(request, Scope.READ)
        entries = []
        for m in dataplane.registry.models.list_models():
            if not who.can_access(m.name):
                continue
            for v in dataplane.registry.models.list_versions(m.name):
                reason = dataplane.unavailable_reason(m, v)
                entry = {
                    "name": m.name,
                    "version": str(v.version),
                    "state": "UNAVAILABLE" if reason else "READY",
                }
                if reason:
                    entry["reason"] = reason
                entries.append(entry)
        return _json(entries)

    @app.post("/repository/models/{model}/load", responses=errors(503))
    def repository_load(request: Request, model: str) -> Response:
        who = auth.principal(request, Scope.DEPLOY)
        who.require_model(model)
        record = dataplane.load_model(model)
        dataplane.registry.audit.record(
            actor=who.name, action="model.load", target=f"{model}/{record.version}"
        )
        return _json({})

    @app.post("/repository/models/{model}/unload")
    def repository_unload(request: Request, model: str) -> Response:
        who = auth.principal(request, Scope.DEPLOY)
        who.require_model(model)
        dataplane.unload_model(model)
        dataplane.registry.audit.record(actor=who.name, action="model.unload", target=model)
        return _json({})

    return app
