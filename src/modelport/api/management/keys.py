"""``/api/v1/keys`` and ``/api/v1/audit``: issue, list and revoke keys; read the audit log.

No ``from __future__ import annotations`` here: FastAPI must see the route-local ``Annotated`` aliases.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from modelport.api.management.context import Context
from modelport.api.management.schemas import AuditOut, CreateKey, KeyCreatedOut, KeyOut
from modelport.names import check_name
from modelport.security.keys import Principal, Scope

MAX_AUDIT_PAGE = 1000


def build_router(ctx: Context) -> APIRouter:
    router = APIRouter()
    registry = ctx.registry
    Admin = Annotated[Principal, Depends(ctx.auth.dependency(Scope.ADMIN))]

    @router.post("/keys", tags=["keys"], status_code=201)
    def create_key(who: Admin, body: CreateKey) -> KeyCreatedOut:
        record, secret = ctx.keys.create(
            body.name,
            body.scopes,
            by=who.name,
            expires_at=body.expires_at,
            models=body.models,
            rate_limit=body.rate_limit,
        )
        ctx.auth.forget()
        return KeyCreatedOut(**dict(KeyOut.of(record)), key=secret)

    @router.get("/keys", tags=["keys"])
    def list_keys(_: Admin) -> list[KeyOut]:
        return [KeyOut.of(k) for k in registry.keys.all()]

    @router.delete("/keys/{name}", tags=["keys"])
    def revoke_key(who: Admin, name: str) -> KeyOut:
        check_name(name)
        record = ctx.keys.revoke(name, by=who.name)
        ctx.auth.forget()  # effective on this process's next request; other workers at their next reconcile
        return KeyOut.of(record)

    @router.get("/audit", tags=["audit"])
    def list_audit(
        _: Admin,
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
    ) -> list[AuditOut]:
        events = registry.audit.query(limit=limit, actor=actor, action=action, target=target)
        return [AuditOut.of(a) for a in events]

    return router
