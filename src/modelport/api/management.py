"""Management API under ``/api/v1``: models, versions, aliases, keys, audit.

No ``from __future__ import annotations`` here: FastAPI must see the route-local ``Annotated`` aliases.
"""

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelport.api.auth import Authenticator
from modelport.errors import PayloadTooLarge
from modelport.names import check_name
from modelport.registry import (
    AliasRecord,
    AuditRecord,
    HistoryRecord,
    KeyRecord,
    ModelRecord,
    VersionRecord,
)
from modelport.repository import ModelRepository
from modelport.security.keys import KeyService, Principal, Scope
from modelport.serving.dataplane import DataPlane


class CreateModel(BaseModel):
    name: str
    description: str = Field("", max_length=2000)


class SetAlias(BaseModel):
    version: int = Field(ge=1)


class BatchingConfig(BaseModel):
    max_batch_size: int | None = Field(None, ge=1, le=1_000_000)
    max_delay_ms: float | None = Field(None, ge=0, le=10_000)
    max_queue: int | None = Field(None, ge=1, le=1_000_000)


class VersionConfig(BaseModel):
    """Serving settings of a version (not part of its immutable artifact)."""

    batching: BatchingConfig = BatchingConfig()

    def as_config(self) -> dict[str, Any]:
        batching = self.batching.model_dump(exclude_none=True)
        return {"batching": batching} if batching else {}


class CreateKey(BaseModel):
    name: str
    scopes: list[str] = Field(min_length=1)
    expires_at: datetime | None = None
    models: str | None = Field(None, description="glob of the model names the key may use, e.g. fraud-*")
    rate_limit: float | None = Field(None, gt=0, le=1_000_000, description="requests per second")


def model_json(m: ModelRecord) -> dict[str, Any]:
    return {
        "name": m.name,
        "description": m.description,
        "created_at": m.created_at,
        "created_by": m.created_by,
    }


def version_json(v: VersionRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": v.model,
        "version": v.version,
        "state": v.state.value,
        "sha256": v.sha256,
        "size": v.size,
        "framework": v.framework,
        "signature": v.signature,
        "files": [f.as_dict() for f in v.manifest],
        "created_at": v.created_at,
        "created_by": v.created_by,
        "config": v.config,
    }
    if v.error:
        out["error"] = v.error
    return out


def alias_json(a: AliasRecord) -> dict[str, Any]:
    return {"alias": a.name, "version": a.version, "updated_at": a.updated_at, "updated_by": a.updated_by}


def history_json(h: HistoryRecord) -> dict[str, Any]:
    return {"version": h.version, "action": h.action, "at": h.at, "by": h.by}


def key_json(k: KeyRecord) -> dict[str, Any]:
    return {
        "name": k.name,
        "prefix": k.prefix,
        "scopes": sorted(k.scopes),
        "created_at": k.created_at,
        "revoked_at": k.revoked_at,
        "expires_at": k.expires_at,
        "models": k.models,
        "rate_limit": k.rate_limit,
    }


def audit_json(a: AuditRecord) -> dict[str, Any]:
    return {
        "id": a.id,
        "at": a.at,
        "actor": a.actor,
        "action": a.action,
        "target": a.target,
        "result": a.result,
        "details": a.details,
    }


def build_router(
    repository: ModelRepository,
    dataplane: DataPlane,
    keys: KeyService,
    auth: Authenticator,
    max_upload: int,
) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    registry = repository.registry
    Reader = Annotated[Principal, Depends(auth.dependency(Scope.READ))]
    Writer = Annotated[Principal, Depends(auth.dependency(Scope.WRITE))]
    Deployer = Annotated[Principal, Depends(auth.dependency(Scope.DEPLOY))]
    Admin = Annotated[Principal, Depends(auth.dependency(Scope.ADMIN))]

    def model_name(request: Request, model: str) -> str:
        """The route's model, checked: a valid name the caller's key may see (declare the key first)."""
        check_name(model, field="model")
        request.state.principal.require_model(model)
        return model

    Model = Annotated[str, Depends(model_name)]

    # ---- models -------------------------------------------------------------------------------
    @router.get("/models", tags=["models"])
    def list_models(who: Reader) -> list[dict[str, Any]]:
        out = []
        for m in registry.models.list_models():
            if not who.can_access(m.name):
                continue
            entry = model_json(m)
            entry["aliases"] = {a.name: a.version for a in registry.aliases.of_model(m.name)}
            versions = registry.models.list_versions(m.name)
            entry["latest_version"] = versions[-1].version if versions else None
            out.append(entry)
        return out

    @router.post("/models", tags=["models"], status_code=201)
    def create_model(who: Writer, body: CreateModel) -> dict[str, Any]:
        check_name(body.name)
        who.require_model(body.name)
        record = registry.models.create_model(body.name, by=who.name, description=body.description)
        registry.audit.record(actor=who.name, action="model.create", target=body.name)
        return model_json(record)

    @router.get("/models/{model}", tags=["models"])
    def get_model(_: Reader, model: Model) -> dict[str, Any]:
        entry = model_json(registry.models.get_model(model))
        entry["versions"] = [version_json(v) for v in registry.models.list_versions(model)]
        entry["aliases"] = [alias_json(a) for a in registry.aliases.of_model(model)]
        return entry

    @router.delete("/models/{model}", tags=["models"], status_code=204)
    def delete_model(who: Writer, model: Model) -> Response:
        repository.delete_model(model, by=who.name)
        dataplane.reconcile()
        return Response(status_code=204)

    # ---- versions -----------------------------------------------------------------------------
    @router.post(
        "/models/{model}/versions",
        tags=["versions"],
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def push_version(
        request: Request,
        who: Writer,
        model: Model,
        framework: Annotated[str | None, Query(max_length=32)] = None,
        filename: Annotated[str | None, Query(max_length=255)] = None,
        max_batch_size: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
        max_delay_ms: Annotated[float | None, Query(ge=0, le=10_000)] = None,
        max_queue: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    ) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_upload:
            raise PayloadTooLarge(f"artifact exceeds the upload limit of {max_upload} bytes")
        upload = repository.begin_upload()
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
            lambda: repository.push(
                model, upload, by=who.name, framework=framework, filename=filename, config=config
            )
        )
        return Response(
            orjson.dumps(jsonable_encoder(version_json(record))),
            status_code=201,
            media_type="application/json",
        )

    @router.get("/models/{model}/versions", tags=["versions"])
    def list_versions(_: Reader, model: Model) -> list[dict[str, Any]]:
        return [version_json(v) for v in registry.models.list_versions(model)]

    @router.get("/models/{model}/versions/{version}", tags=["versions"])
    def get_version(_: Reader, model: Model, version: int) -> dict[str, Any]:
        return version_json(registry.models.get_version(model, version))

    @router.put("/models/{model}/versions/{version}/config", tags=["versions"])
    def set_version_config(who: Deployer, model: Model, version: int, body: VersionConfig) -> dict[str, Any]:
        record = registry.models.set_version_config(model, version, body.as_config())
        registry.audit.record(
            actor=who.name, action="version.config", target=f"{model}/{version}", details=record.config
        )
        dataplane.reconcile()
        return version_json(record)

    @router.delete("/models/{model}/versions/{version}", tags=["versions"], status_code=204)
    def delete_version(who: Writer, model: Model, version: int) -> Response:
        repository.delete_version(model, version, by=who.name)
        dataplane.reconcile()
        return Response(status_code=204)

    # ---- aliases ------------------------------------------------------------------------------
    @router.get("/models/{model}/aliases", tags=["aliases"])
    def list_aliases(_: Reader, model: Model) -> list[dict[str, Any]]:
        return [alias_json(a) for a in registry.aliases.of_model(model)]

    @router.put("/models/{model}/aliases/{alias}", tags=["aliases"])
    def set_alias(who: Deployer, model: Model, alias: str, body: SetAlias) -> dict[str, Any]:
        check_name(alias, field="alias")
        return alias_json(dataplane.promote(model, alias, body.version, by=who.name))

    @router.post("/models/{model}/aliases/{alias}/rollback", tags=["aliases"])
    def rollback_alias(who: Deployer, model: Model, alias: str) -> dict[str, Any]:
        check_name(alias, field="alias")
        return alias_json(dataplane.rollback(model, alias, by=who.name))

    @router.get("/models/{model}/aliases/{alias}/history", tags=["aliases"])
    def alias_history(_: Reader, model: Model, alias: str) -> list[dict[str, Any]]:
        check_name(alias, field="alias")
        return [history_json(h) for h in registry.aliases.history(model, alias)]

    # ---- keys and audit -----------------------------------------------------------------------
    @router.post("/keys", tags=["keys"], status_code=201)
    def create_key(who: Admin, body: CreateKey) -> dict[str, Any]:
        record, secret = keys.create(
            body.name,
            body.scopes,
            by=who.name,
            expires_at=body.expires_at,
            models=body.models,
            rate_limit=body.rate_limit,
        )
        auth.forget()
        return {**key_json(record), "key": secret}

    @router.get("/keys", tags=["keys"])
    def list_keys(_: Admin) -> list[dict[str, Any]]:
        return [key_json(k) for k in registry.keys.all()]

    @router.delete("/keys/{name}", tags=["keys"])
    def revoke_key(who: Admin, name: str) -> dict[str, Any]:
        check_name(name)
        record = keys.revoke(name, by=who.name)
        auth.forget()  # effective on this process's next request; other workers at their next reconcile
        return key_json(record)

    @router.get("/audit", tags=["audit"])
    def list_audit(
        _: Admin,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
    ) -> list[dict[str, Any]]:
        return [
            audit_json(a)
            for a in registry.audit.query(limit=limit, actor=actor, action=action, target=target)
        ]

    return router


def install(
    app: FastAPI,
    repository: ModelRepository,
    dataplane: DataPlane,
    keys: KeyService,
    auth: Authenticator,
    max_upload: int,
) -> None:
    app.include_router(build_router(repository, dataplane, keys, auth, max_upload))
