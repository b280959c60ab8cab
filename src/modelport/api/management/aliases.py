"""``/api/v1/models/{model}/aliases``: list, promote, roll back, history.

No ``from __future__ import annotations`` here: FastAPI must see the route-local ``Annotated`` aliases.
"""

from typing import Annotated

from fastapi import APIRouter, Depends

from modelport.api.management.context import Context, Model
from modelport.api.management.schemas import AliasOut, HistoryOut, SetAlias
from modelport.names import check_name
from modelport.security.keys import Principal, Scope


def build_router(ctx: Context) -> APIRouter:
    router = APIRouter(tags=["aliases"])
    registry = ctx.registry
    Reader = Annotated[Principal, Depends(ctx.auth.dependency(Scope.READ))]
    Deployer = Annotated[Principal, Depends(ctx.auth.dependency(Scope.DEPLOY))]

    @router.get("/models/{model}/aliases")
    def list_aliases(_: Reader, model: Model) -> list[AliasOut]:
        return [AliasOut.of(a) for a in registry.aliases.of_model(model)]

    @router.put("/models/{model}/aliases/{alias}")
    def set_alias(who: Deployer, model: Model, alias: str, body: SetAlias) -> AliasOut:
        check_name(alias, field="alias")
        return AliasOut.of(ctx.dataplane.promote(model, alias, body.version, by=who.name))

    @router.post("/models/{model}/aliases/{alias}/rollback")
    def rollback_alias(who: Deployer, model: Model, alias: str) -> AliasOut:
        check_name(alias, field="alias")
        return AliasOut.of(ctx.dataplane.rollback(model, alias, by=who.name))

    @router.get("/models/{model}/aliases/{alias}/history")
    def alias_history(_: Reader, model: Model, alias: str) -> list[HistoryOut]:
        check_name(alias, field="alias")
        return [HistoryOut.of(h) for h in registry.aliases.history(model, alias)]

    return router
