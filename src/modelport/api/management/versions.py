"""``/api/v1/models/{model}/versions``: push (the raw artifact bytes, or one multipart file part), list,
show, configure, delete.

No ``from __future__ import annotations`` here: FastAPI must see the route-local ``Annotated`` aliases.
"""

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelport.api.headers import declared_over
from modelport.api.management.context import Context, Model, require_dataset
from modelport.api.management.multipart import SingleFileParts, boundary_of, is_multipart
from modelport.api.management.routing import management_router
from modelport.api.management.schemas import (
    BatchingConfig,
    Device,
    Dtype,
    PushedVersionOut,
    VersionConfig,
    VersionConfigPatch,
    VersionOut,
)
from modelport.api.openapi import errors
from modelport.errors import InvalidInput, PayloadTooLarge
from modelport.limits import BATCH_DELAY_LIMIT_MS, BATCH_SIZE_LIMIT, BATCH_TOKENS_LIMIT, QUEUE_LIMIT
from modelport.registry import VersionRecord, VersionState
from modelport.repository import Upload
from modelport.security.keys import Principal, Scope

ARTIFACT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                },
                "encoding": {"file": {"contentType": "application/octet-stream"}},
            },
        },
    }
}


async def receive_artifact(request: Request, upload: Upload) -> str | None:
    """Stream the body into ``upload``: the raw bytes, or the one file part of a multipart body (whose
    file name is returned)."""
    content_type = request.headers.get("content-type")
    if not is_multipart(content_type):
        async for chunk in request.stream():
            upload.write(chunk)
        return None
    parts = SingleFileParts(boundary_of(content_type or ""), upload.write)
    async for chunk in request.stream():
        parts.feed(chunk)
    return parts.finish()


def runtime_settings(text: str | None) -> dict[str, Any] | None:
    """The ``runtime`` query parameter: a JSON object (the runtime checks its keys at push)."""
    if text is None:
        return None
    try:
        settings = json.loads(text)
    except ValueError:
        settings = None
    if not isinstance(settings, dict):
        raise InvalidInput('runtime must be a JSON object, e.g. {"normalize": true}', field="runtime")
    return settings


def build_router(ctx: Context) -> APIRouter:
    router = management_router(tags=["versions"])
    registry = ctx.registry
    Reader = Annotated[Principal, Depends(ctx.auth.dependency(Scope.READ))]
    Writer = Annotated[Principal, Depends(ctx.auth.dependency(Scope.WRITE))]
    Deployer = Annotated[Principal, Depends(ctx.auth.dependency(Scope.DEPLOY))]

    @router.post(
        "/models/{model}/versions",
        status_code=201,
        openapi_extra=ARTIFACT_BODY,
        responses=errors(413, 507),
    )
    async def push_version(
        request: Request,
        who: Writer,
        model: Model,
        framework: Annotated[str | None, Query(max_length=32)] = None,
        filename: Annotated[str | None, Query(max_length=255)] = None,
        max_batch_size: Annotated[int | None, Query(ge=1, le=BATCH_SIZE_LIMIT)] = None,
        max_delay_ms: Annotated[float | None, Query(ge=0, le=BATCH_DELAY_LIMIT_MS)] = None,
        max_queue: Annotated[int | None, Query(ge=1, le=QUEUE_LIMIT)] = None,
        max_batch_tokens: Annotated[int | None, Query(ge=1, le=BATCH_TOKENS_LIMIT)] = None,
        device: Annotated[Device | None, Query()] = None,
        dtype: Annotated[Dtype | None, Query()] = None,
        task: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z][a-z0-9-]*$")] = None,
        runtime: Annotated[
            str | None,
            Query(max_length=4096, description='runtime settings as a JSON object, e.g. {"normalize": true}'),
        ] = None,
        reference_dataset: Annotated[
            str | None,
            Query(max_length=140, description="a dataset profiled as the version's reference for drift"),
        ] = None,
        reference_target: Annotated[
            str | None, Query(max_length=256, description="its column that the predictions are compared with")
        ] = None,
    ) -> PushedVersionOut:
        """Body: the artifact's bytes (``--data-binary @model.skops``), or ``multipart/form-data`` with
        exactly one file part (``-F file=@model.skops``, its file name used unless ``filename`` is
        given). ``device``/``dtype`` place the version (its config, changeable later); ``task`` says what a
        multi-task model does (transformers: text-classification, feature-extraction, text-generation).
        ``same_sha256_as`` lists the versions that already had these exact bytes."""
        if declared_over(request.headers.get("content-length"), ctx.max_upload):
            raise PayloadTooLarge(f"artifact exceeds the upload limit of {ctx.max_upload} bytes")
        settings = runtime_settings(runtime)
        if reference_dataset is not None:  # checked before the upload: a bad reference stores nothing
            require_dataset(who, reference_dataset)
            await run_in_threadpool(ctx.monitoring.check_reference, reference_dataset, reference_target)
        upload = ctx.repository.begin_upload()
        try:
            part_name = await receive_artifact(request, upload)
        except BaseException:
            upload.discard()
            raise
        config = VersionConfig(
            batching=BatchingConfig(
                max_batch_size=max_batch_size,
                max_delay_ms=max_delay_ms,
                max_queue=max_queue,
                max_batch_tokens=max_batch_tokens,
            ),
            device=device,
            dtype=dtype,
            runtime=settings,
        ).as_config()
        name = filename or part_name or None
        record = await run_in_threadpool(
            lambda: ctx.repository.push(
                model, upload, by=who.name, framework=framework, filename=name, config=config, task=task
            )
        )
        if reference_dataset is not None and record.state is VersionState.READY:
            await run_in_threadpool(
                lambda: ctx.monitoring.reference_from_dataset(
                    model, record.version, reference_dataset, features=None, target=reference_target,
                    by=who.name,
                )
            )  # fmt: skip
        twins = await run_in_threadpool(same_bytes, record)
        return PushedVersionOut(**dict(VersionOut.of(record)), same_sha256_as=twins)

    def same_bytes(record: VersionRecord) -> list[int]:
        return [
            v.version
            for v in registry.models.list_versions(record.model)
            if v.sha256 == record.sha256 and v.version != record.version
        ]

    @router.get("/models/{model}/versions")
    def list_versions(_: Reader, model: Model) -> list[VersionOut]:
        return [VersionOut.of(v) for v in registry.models.list_versions(model)]

    # {version} is unbounded here on purpose: a number no registry holds is a 404 (not_found), as for
    # any other unknown version, rather than a 400 that would tell numbers apart.
    @router.get("/models/{model}/versions/{version}")
    def get_version(_: Reader, model: Model, version: int) -> VersionOut:
        return VersionOut.of(registry.models.get_version(model, version))

    @router.get(
        "/models/{model}/versions/{version}/config",
        response_model=None,  # the stored settings as they are; documented as VersionConfig
        responses={200: {"model": VersionConfig, "description": "the settings this version sets"}},
    )
    def get_version_config(_: Reader, model: Model, version: int) -> dict[str, Any]:
        """The version's own serving settings; a setting absent here uses the server's default."""
        return registry.models.get_version(model, version).config

    def configure(
        who: Principal,
        model: str,
        version: int,
        config: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]],
        mode: str,
    ) -> VersionOut:
        current = registry.models.get_version(model, version)
        ctx.repository.check_config(current, config(current.config) if callable(config) else config)
        record = registry.models.set_version_config(model, version, config)
        registry.audit.record(
            actor=who.name,
            action="version.config",
            target=f"{model}/{version}",
            details={"mode": mode, "config": record.config},
        )
        ctx.dataplane.reconcile()
        return VersionOut.of(record)

    @router.put("/models/{model}/versions/{version}/config")
    def set_version_config(who: Deployer, model: Model, version: int, body: VersionConfig) -> VersionOut:
        """Replace the version's serving settings as a whole: a setting left out goes back to the
        server's default (use PATCH to change some and keep the others)."""
        return configure(who, model, version, body.as_config(), "replace")

    @router.patch("/models/{model}/versions/{version}/config")
    def patch_version_config(
        who: Deployer, model: Model, version: int, body: VersionConfigPatch
    ) -> VersionOut:
        """Change only the settings given (JSON merge patch): null removes one, the others stay."""
        return configure(who, model, version, body.applied_to, "merge")

    @router.delete("/models/{model}/versions/{version}", status_code=204, responses=errors(409))
    def delete_version(who: Writer, model: Model, version: int) -> Response:
        """409 while an alias points at the version; the message names those aliases."""
        ctx.repository.delete_version(model, version, by=who.name)
        ctx.dataplane.reconcile()
        return Response(status_code=204)

    return router
