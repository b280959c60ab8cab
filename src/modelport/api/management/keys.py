"""``/api/v1/keys`` and ``/api/v1/audit``: issue, list and revoke keys; read the audit log.

No ``from __future__ import annotations`` here: FastAPI must see the route-local ``Annotated`` aliases.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from modelport.api.management.context import Context
from modelport.api.management.routing import management_router
from modelport.api.management.schemas import AuditOut, CreateKey, KeyCreatedOut, KeyOut
from modelport.api.openapi import errors
from modelport.names import check_name
from modelport.security.keys import Principal, Scope

MAX_AUDIT_PAGE = 1000
MAX_ID = 2**63 - 1


def build_router(ctx: Context) -> APIRouter:
    router = management_router()
    registry = ctx.registry
    Admin = Annotated[Principal, Depends(ctx.auth.dependency(Scope.ADMIN))]

    @router.post("/keys", tags=["keys"], status_code=201, responses=errors(409))
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

    @router.delete("/keys/{name}", tags=["keys"], responses=errors(404, 409))
    def revoke_key(
        who: Admin,
        name: str,
        force: Annotated[bool, Query(description="also revoke the last active admin key")] = False,
    ) -> KeyOut:
        """Revoke a key. The last active admin key is kept (409) unless ``force=true``: without one, no
        one can manage keys until a restart creates a new bootstrap admin key."""
        check_name(name)
        record = ctx.keys.revoke(name, by=who.name, force=force)
        ctx.auth.forget()  # effective on this process's next request; other workers at their next reconcile
        return KeyOut.of(record)

    @router.get("/audit", tags=["audit"])
    def list_audit(
        _: Admin,
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        model: Annotated[
            str | None,
            Query(description="events on the model, its versions (NAME/...) and aliases (NAME@...)"),
        ] = None,
        before: Annotated[
            int | None, Query(ge=1, le=MAX_ID, description="events older than this id: the next page")
        ] = None,
    ) -> list[AuditOut]:
        """Newest first. Page back with ``before`` = the smallest ``id`` of the page read."""
        if model is not None:
            check_name(model, field="model")
        events = registry.audit.query(
            limit=limit, actor=actor, action=action, target=target, model=model, before=before
        )
        return [AuditOut.of(a) for a in events]

    return router
