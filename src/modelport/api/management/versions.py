"""``/api/v1/models/{model}/versions``: push (the raw artifact bytes), list, show, configure, delete.

No ``from __future__ import annotations`` here: FastAPI must see the route-local ``Annotated`` aliases.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelport.api.headers import declared_over
from modelport.api.management.context import Context, Model
from modelport.api.management.schemas import BatchingConfig, VersionConfig, VersionOut
from modelport.errors import PayloadTooLarge
from modelport.limits import BATCH_DELAY_LIMIT_MS, BATCH_SIZE_LIMIT, QUEUE_LIMIT
from modelport.security.keys import Principal, Scope

ARTIFACT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def build_router(ctx: Context) -> APIRouter:
    router = APIRouter(tags=["versions"])
    registry = ctx.registry
    Reader = Annotated[Principal, Depends(ctx.auth.dependency(Scope.READ))]
    Writer = Annotated[Principal, Depends(ctx.auth.dependency(Scope.WRITE))]
    Deployer = Annotated[Principal, Depends(ctx.auth.dependency(Scope.DEPLOY))]

    @router.post("/models/{model}/versions", status_code=201, openapi_extra=ARTIFACT_BODY)
    async def push_version(
        request: Request,
        who: Writer,
        model: Model,
        framework: Annotated[str | None, Query(max_length=32)] = None,
        filename: Annotated[str | None, Query(max_length=255)] = None,
        max_batch_size: Annotated[int | None, Query(ge=1, le=BATCH_SIZE_LIMIT)] = None,
        max_delay_ms: Annotated[float | None, Query(ge=0, le=BATCH_DELAY_LIMIT_MS)] = None,
        max_queue: Annotated[int | None, Query(ge=1, le=QUEUE_LIMIT)] = None,
    ) -> VersionOut:
        if declared_over(request.headers.get("content-length"), ctx.max_upload):
            raise PayloadTooLarge(f"artifact exceeds the upload limit of {ctx.max_upload} bytes")
        upload = ctx.repository.begin_upload()
        try:
            async for chunk in request.stream():
                upload.write(chunk)
        except BaseException:
            upload.discard()
            raise
        config = VersionConfig(
            batching=BatchingConfig(
                max_batch_size=max_batch_size, max_delay_ms=max_delay_ms, max_queue=max_queue
            )
        ).as_config()
        record = await run_in_threadpool(
            lambda: ctx.repository.push(
                model, upload, by=who.name, framework=framework, filename=filename, config=config
            )
        )
        return VersionOut.of(record)

    @router.get("/models/{model}/versions")
    def list_versions(_: Reader, model: Model) -> list[VersionOut]:
        return [VersionOut.of(v) for v in registry.models.list_versions(model)]

    # {version} is unbounded here on purpose: a number no registry holds is a 404 (not_found), as for
    # any other unknown version, rather than a 400 that would tell numbers apart.
    @router.get("/models/{model}/versions/{version}")
    def get_version(_: Reader, model: Model, version: int) -> VersionOut:
        return VersionOut.of(registry.models.get_version(model, version))

    @router.put("/models/{model}/versions/{version}/config")
    def set_version_config(who: Deployer, model: Model, version: int, body: VersionConfig) -> VersionOut:
        record = registry.models.set_version_config(model, version, body.as_config())
        registry.audit.record(
            actor=who.name, action="version.config", target=f"{model}/{version}", details=record.config
        )
        ctx.dataplane.reconcile()
        return VersionOut.of(record)

    @router.delete("/models/{model}/versions/{version}", status_code=204)
    def delete_version(who: Writer, model: Model, version: int) -> Response:
        ctx.repository.delete_version(model, version, by=who.name)
        ctx.dataplane.reconcile()
        return Response(status_code=204)

    return router
