"""The append-only audit log: a record for people. Serving follows the change feed, not this."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from modelport.registry.db import Database, as_utc, utcnow
from modelport.registry.records import REQUEST_SOURCE, AuditRecord
from modelport.registry.tables import AuditRow


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        result: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append one event; ``details["from"]`` is the requesting client's address when there is one."""
        details = dict(details or {})
        source = REQUEST_SOURCE.get()
        if source is not None:
            details.setdefault("from", source)
        with self.db.tx() as s:
            s.add(
                AuditRow(
                    at=utcnow(), actor=actor, action=action, target=target, result=result, details=details
                )
            )

    def query(
        self,
        *,
        limit: int = 100,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        model: str | None = None,
        before: int | None = None,
    ) -> list[AuditRecord]:
        """Newest first. ``model``: events whose target is the model (``NAME``), one of its versions
        (``NAME/...``) or aliases (``NAME@...``). ``before``: events with a smaller id (the next page
        after the oldest one seen)."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if model:
            query = query.where(
                or_(
                    AuditRow.target == model,
                    AuditRow.target.startswith(f"{model}/", autoescape=True),
                    AuditRow.target.startswith(f"{model}@", autoescape=True),
                )
            )
        if before is not None:
            query = query.where(AuditRow.id < before)
        if actor:
            query = query.where(AuditRow.actor == actor)
        if action:
            query = query.where(AuditRow.action == action)
        if target:
            query = query.where(AuditRow.target == target)
        with self.db.tx() as s:
            return [
                AuditRecord(r.id, as_utc(r.at), r.actor, r.action, r.target, r.result, r.details)
                for r in s.scalars(query)
            ]
