"""``/api/v1/models``: list, create, show and delete models.

No ``from __future__ import annotations`` here: FastAPI must see the route-local ``Annotated`` aliases.
"""

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import Response

from modelport.api.management.context import Context, Model
from modelport.api.management.routing import management_router
from modelport.api.management.schemas import (
    AliasOut,
    CreateModel,
    ModelDetailOut,
    ModelOut,
    ModelSummaryOut,
    VersionOut,
)
from modelport.api.openapi import errors
from modelport.names import check_name
from modelport.security.keys import Principal, Scope


def build_router(ctx: Context) -> APIRouter:
    router = management_router(tags=["models"])
    registry = ctx.registry
    Reader = Annotated[Principal, Depends(ctx.auth.dependency(Scope.READ))]
    Writer = Annotated[Principal, Depends(ctx.auth.dependency(Scope.WRITE))]

    @router.get("/models")
    def list_models(who: Reader) -> list[ModelSummaryOut]:
        out = []
        for m in registry.models.list_models():
            if not who.can_access(m.name):
                continue
            versions = registry.models.list_versions(m.name)
            out.append(
                ModelSummaryOut(
                    **dict(ModelOut.of(m)),
                    aliases={a.name: a.version for a in registry.aliases.of_model(m.name)},
                    latest_version=versions[-1].version if versions else None,
                )
            )
        return out

    @router.post("/models", status_code=201, responses=errors(409))
    def create_model(who: Writer, body: CreateModel) -> ModelOut:
        check_name(body.name)
        who.require_model(body.name)
        record = registry.models.create_model(body.name, by=who.name, description=body.description)
        registry.audit.record(actor=who.name, action="model.create", target=body.name)
        return ModelOut.of(record)

    @router.get("/models/{model}")
    def get_model(_: Reader, model: Model) -> ModelDetailOut:
        return ModelDetailOut(
            **dict(ModelOut.of(registry.models.get_model(model))),
            versions=[VersionOut.of(v) for v in registry.models.list_versions(model)],
            aliases=[AliasOut.of(a) for a in registry.aliases.of_model(model)],
        )

    @router.delete("/models/{model}", status_code=204)
    def delete_model(who: Writer, model: Model) -> Response:
        ctx.repository.delete_model(model, by=who.name)
        ctx.dataplane.reconcile()
        ctx.monitoring.forget(model)
        return Response(status_code=204)

    return router
