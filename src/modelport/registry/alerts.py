"""Alert rules and the webhook outbox.

A rule's ``state`` (``ok`` / ``firing``) moves only by compare-and-set, in the same transaction as its
audit event and its webhook deliveries: however many processes evaluate the rule, each firing and each
clearing is recorded once. Deliveries stay in the outbox until sent or out of attempts; ``next_at`` is
also the claim (the sender moves it forward before posting), so one process sends each attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from modelport.errors import NotFound
from modelport.registry.db import Database, as_utc, changed, utcnow
from modelport.registry.models import model_row
from modelport.registry.records import REQUEST_SOURCE
from modelport.registry.tables import AlertRuleRow, AuditRow, ModelRow, WebhookDeliveryRow

OK, FIRING = "ok", "firing"
MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class AlertRule:
    id: int
    model: str
    kind: str
    threshold: float
    window_seconds: int
    version: str | None  # an alias or a number; None: the version a request without one reaches
    webhook_url: str | None
    webhook_secret: str | None
    state: str
    value: float | None
    detail: dict[str, Any] | None
    changed_at: datetime | None
    evaluated_at: datetime | None
    created_at: datetime
    created_by: str

    def public(self) -> dict[str, Any]:
        """The rule as the API and the dashboard show it (never the webhook's secret)."""
        return {
            "id": self.id,
            "model": self.model,
            "kind": self.kind,
            "threshold": self.threshold,
            "window_seconds": self.window_seconds,
            "version": self.version,
            "webhook": self.webhook_url is not None,
            "webhook_url": self.webhook_url,
            "state": self.state,
            "value": self.value,
            "detail": self.detail,
            "changed_at": None if self.changed_at is None else self.changed_at.isoformat(),
            "evaluated_at": None if self.evaluated_at is None else self.evaluated_at.isoformat(),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class Delivery:
    id: int
    url: str
    secret: str | None
    payload: dict[str, Any]
    attempts: int


class Alerts:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        model: str,
        *,
        kind: str,
        threshold: float,
        window_seconds: int,
        version: str | None,
        webhook_url: str | None,
        webhook_secret: str | None,
        by: str,
    ) -> AlertRule:
        with self.db.tx() as s:
            row = AlertRuleRow(
                model_id=model_row(s, model).id,
                kind=kind,
                threshold=threshold,
                window_seconds=window_seconds,
                version_ref=version,
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                state=OK,
                created_at=utcnow(),
                created_by=by,
            )
            s.add(row)
            s.flush()
            return _rule(model, row)

    def rules(self, model: str | None = None) -> list[AlertRule]:
        query = select(ModelRow.name, AlertRuleRow).join(ModelRow, ModelRow.id == AlertRuleRow.model_id)
        if model is not None:
            query = query.where(ModelRow.name == model)
        with self.db.tx() as s:
            return [_rule(name, row) for name, row in s.execute(query.order_by(AlertRuleRow.id))]

    def get(self, model: str, rule_id: int) -> AlertRule:
        for rule in self.rules(model):
            if rule.id == rule_id:
                return rule
        raise NotFound(f"alert rule {rule_id} of model {model!r} not found")

    def delete(self, model: str, rule_id: int) -> AlertRule:
        if not 1 <= rule_id <= MAX_ID:  # a number no row can have (and the database's integer refuses)
            raise NotFound(f"alert rule {rule_id} of model {model!r} not found")
        with self.db.tx() as s:
            row = s.get(AlertRuleRow, rule_id, with_for_update=True)
            if row is None or row.model_id != model_row(s, model).id:
                raise NotFound(f"alert rule {rule_id} of model {model!r} not found")
            rule = _rule(model, row)
            s.delete(row)
            return rule

    def evaluated(self, rule: AlertRule, value: float | None, detail: dict[str, Any] | None) -> None:
        """Record the latest figure of a rule whose state did not change (unless another process moved
        it meanwhile: its figure is newer)."""
        with self.db.tx() as s:
            s.execute(
                update(AlertRuleRow)
                .where(AlertRuleRow.id == rule.id, AlertRuleRow.state == rule.state)
                .values(value=value, detail=detail, evaluated_at=utcnow())
            )

    def transition(
        self,
        rule: AlertRule,
        state: str,
        value: float | None,
        detail: dict[str, Any],
        payload: dict[str, Any],
    ) -> bool:
        """Move ``rule`` from the state it was read in to ``state``; on success (only one caller wins)
        append the audit event and queue the webhook delivery. False when another process moved it."""
        now = utcnow()
        with self.db.tx() as s:
            moved = changed(
                s.execute(
                    update(AlertRuleRow)
                    .where(AlertRuleRow.id == rule.id, AlertRuleRow.state == rule.state)
                    .values(state=state, value=value, detail=detail, changed_at=now, evaluated_at=now)
                )
            )
            if not moved:
                return False
            details: dict[str, Any] = {
                "rule": rule.id,
                "kind": rule.kind,
                "threshold": rule.threshold,
                "value": value,
                **detail,
            }
            source = REQUEST_SOURCE.get()
            if source is not None:
                details.setdefault("from", source)
            s.add(
                AuditRow(
                    at=now,
                    actor="monitoring",
                    action=f"alert.{'fired' if state == FIRING else 'cleared'}",
                    target=rule.model,
                    result="ok",
                    details=details,
                )
            )
            if rule.webhook_url:
                s.add(
                    WebhookDeliveryRow(
                        url=rule.webhook_url,
                        secret=rule.webhook_secret,
                        payload=payload,
                        attempts=0,
                        next_at=now,
                        created_at=now,
                    )
                )
            return True

    # ---- the webhook outbox -------------------------------------------------------------------
    def claim_deliveries(self, lease: float, limit: int = 20) -> list[Delivery]:
        """Due deliveries, each claimed for ``lease`` seconds (its next attempt moved that far ahead)."""
        now = utcnow()
        claimed: list[Delivery] = []
        with self.db.tx() as s:
            due = s.scalars(
                select(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.next_at.is_not(None), WebhookDeliveryRow.next_at <= now)
                .order_by(WebhookDeliveryRow.next_at)
                .limit(limit)
            ).all()
        for row in due:
            with self.db.tx() as s:
                taken = changed(
                    s.execute(
                        update(WebhookDeliveryRow)
                        .where(WebhookDeliveryRow.id == row.id, WebhookDeliveryRow.next_at == row.next_at)
                        .values(next_at=now + timedelta(seconds=lease), attempts=row.attempts + 1)
                    )
                )
            if taken:
                claimed.append(Delivery(row.id, row.url, row.secret, row.payload, row.attempts + 1))
        return claimed

    def delivered(self, delivery_id: int) -> None:
        with self.db.tx() as s:
            s.execute(
                update(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.id == delivery_id)
                .values(next_at=None, delivered_at=utcnow(), last_error=None)
            )

    def failed(self, delivery_id: int, error: str, retry_in: float | None) -> None:
        """An attempt failed: try again in ``retry_in`` seconds, or give up (None)."""
        next_at = None if retry_in is None else utcnow() + timedelta(seconds=retry_in)
        with self.db.tx() as s:
            s.execute(
                update(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.id == delivery_id)
                .values(next_at=next_at, last_error=error[:2000])
            )

    def deliveries(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest deliveries and how they went (for operators and tests)."""
        with self.db.tx() as s:
            rows = s.scalars(select(WebhookDeliveryRow).order_by(WebhookDeliveryRow.id.desc()).limit(limit))
            return [
                {
                    "id": r.id,
                    "url": r.url,
                    "event": r.payload.get("event"),
                    "attempts": r.attempts,
                    "pending": r.next_at is not None,
                    "delivered_at": None if r.delivered_at is None else as_utc(r.delivered_at).isoformat(),
                    "last_error": r.last_error,
                }
                for r in rows
            ]


def _rule(model: str, row: AlertRuleRow) -> AlertRule:
    return AlertRule(
        row.id,
        model,
        row.kind,
        row.threshold,
        row.window_seconds,
        row.version_ref,
        row.webhook_url,
        row.webhook_secret,
        row.state,
        row.value,
        row.detail,
        None if row.changed_at is None else as_utc(row.changed_at),
        None if row.evaluated_at is None else as_utc(row.evaluated_at),
        as_utc(row.created_at),
        row.created_by,
    )
