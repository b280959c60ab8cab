"""``/api/v1/models/{model}/aliases``: list, promote, roll back, delete, history.

No ``from __future__ import annotations`` here: FastAPI must see the route-local ``Annotated`` aliases.
"""

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import Response

from modelport.api.management.context import Context, Model
from modelport.api.management.routing import management_router
from modelport.api.management.schemas import AliasOut, HistoryOut, SetAlias
from modelport.api.openapi import errors
from modelport.errors import InvalidInput, NotFound
from modelport.names import check_alias
from modelport.security.keys import Principal, Scope


def build_router(ctx: Context) -> APIRouter:
    router = management_router(tags=["aliases"])
    registry = ctx.registry
    Reader = Annotated[Principal, Depends(ctx.auth.dependency(Scope.READ))]
    Deployer = Annotated[Principal, Depends(ctx.auth.dependency(Scope.DEPLOY))]

    @router.get("/models/{model}/aliases")
    def list_aliases(_: Reader, model: Model) -> list[AliasOut]:
        return [AliasOut.of(a) for a in registry.aliases.of_model(model)]

    def target_of(model: str, body: SetAlias) -> int:
        """The version a promotion names: its number, or what the source alias points at now."""
        if (body.version is None) == (body.alias is None):
            raise InvalidInput('give exactly one of {"version": N} or {"alias": "NAME"}')
        if body.version is not None:
            return body.version
        source = registry.aliases.find(model, check_alias(body.alias or "", field="alias"))
        if source is None:
            registry.models.get_model(model)  # an unknown model is reported as such
            raise NotFound(f"alias {body.alias!r} of {model!r} not found", field="alias")
        return source.version

    @router.put("/models/{model}/aliases/{alias}", responses=errors(409, 503))
    def set_alias(who: Deployer, model: Model, alias: str, body: SetAlias) -> AliasOut:
        """Point the alias at ``{"version": N}``, or at the version another alias of the model points
        at (``{"alias": "staging"}``). The target is loaded and warmed before the alias moves. A source
        alias is read once: the move uses the version it named then, which the answer shows."""
        check_alias(alias)
        version = target_of(model, body)
        return AliasOut.of(ctx.dataplane.promote(model, alias, version, by=who.name))

    @router.delete("/models/{model}/aliases/{alias}", status_code=204)
    def delete_alias(who: Deployer, model: Model, alias: str) -> Response:
        """Remove the alias (its history stays readable); requests through it answer 404 from then on,
        in every serving process."""
        check_alias(alias)
        record = registry.aliases.delete(model, alias, by=who.name)
        registry.audit.record(
            actor=who.name,
            action="alias.delete",
            target=f"{model}@{alias}",
            details={"version": record.version},
        )
        ctx.dataplane.reconcile()
        return Response(status_code=204)

    @router.post("/models/{model}/aliases/{alias}/rollback", responses=errors(409, 503))
    def rollback_alias(who: Deployer, model: Model, alias: str) -> AliasOut:
        check_alias(alias)
        return AliasOut.of(ctx.dataplane.rollback(model, alias, by=who.name))

    @router.get("/models/{model}/aliases/{alias}/history")
    def alias_history(_: Reader, model: Model, alias: str) -> list[HistoryOut]:
        check_alias(alias)
        return [HistoryOut.of(h) for h in registry.aliases.history(model, alias)]

    return router
