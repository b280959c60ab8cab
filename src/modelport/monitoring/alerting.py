"""Alert rules: evaluated in the background, fired and cleared once, notified by signed webhooks.

Each server process evaluates every rule every ``MODELPORT_ALERT_INTERVAL`` seconds; the figure comes
from ``MonitoringService.measure``. A change of state is a compare-and-set in the registry, in the same
transaction as its audit event and webhook delivery, so however many processes evaluate, each firing and
each clearing is recorded once. Deliveries are sent from the registry's outbox, each attempt claimed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from modelport.errors import ModelportError
from modelport.monitoring import webhook
from modelport.registry import Registry, VersionRecord
from modelport.registry.alerts import FIRING, OK, AlertRule

log = logging.getLogger("modelport.monitoring")
Measure = Callable[[AlertRule, VersionRecord, float], tuple[float | None, dict[str, Any]]]


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class Alerting:
    def __init__(
        self,
        registry: Registry,
        resolve: Callable[[str, str | None], VersionRecord],
        measure: Measure,
        webhook_timeout: float,
        webhook_attempts: int,
    ) -> None:
        self.registry = registry
        self.resolve = resolve  # the version a rule's reference (alias, number, None) reaches now
        self.measure = measure
        self.webhook_timeout = webhook_timeout
        self.webhook_attempts = webhook_attempts

    def create(self, model: str, spec: Mapping[str, Any], *, by: str) -> dict[str, Any]:
        rule = self.registry.alerts.create(
            model,
            kind=spec["kind"],
            threshold=float(spec["threshold"]),
            window_seconds=int(spec["window_seconds"]),
            version=spec.get("version"),
            webhook_url=spec.get("webhook_url"),
            webhook_secret=spec.get("webhook_secret"),
            by=by,
        )
        self.registry.audit.record(
            actor=by, action="alert.create", target=model, details={"rule": rule.id, "kind": rule.kind,
                                                                    "threshold": rule.threshold}
        )  # fmt: skip
        return rule.public()

    def rules(self, model: str) -> list[dict[str, Any]]:
        return [rule.public() for rule in self.registry.alerts.rules(model)]

    def delete(self, model: str, rule_id: int, *, by: str) -> None:
        self.registry.alerts.delete(model, rule_id)
        self.registry.audit.record(actor=by, action="alert.delete", target=model, details={"rule": rule_id})

    def evaluate(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for rule in self.registry.alerts.rules():
            try:
                self._evaluate(rule, now)
            except ModelportError as exc:  # e.g. its alias was deleted: nothing to judge
                self.registry.alerts.evaluated(rule, None, {"error": exc.message})
            except Exception:
                log.exception("alert rule %s failed", rule.id)

    def _evaluate(self, rule: AlertRule, now: float) -> None:
        record = self.resolve(rule.model, rule.version)
        value, detail = self.measure(rule, record, now)
        detail = {**detail, "version": record.version}
        if value is None:  # no data in the window: the rule keeps its state
            self.registry.alerts.evaluated(rule, None, detail)
            return
        breached = value < rule.threshold if rule.kind == "accuracy" else value > rule.threshold
        state = FIRING if breached else OK
        if state == rule.state:
            self.registry.alerts.evaluated(rule, value, detail)
            return
        event = "alert.fired" if state == FIRING else "alert.cleared"
        payload = {
            "event": event,
            "at": iso(now),
            "model": rule.model,
            "version": record.version,
            "rule": {
                k: v
                for k, v in rule.public().items()
                if k in ("id", "kind", "threshold", "window_seconds", "version")
            },
            "value": value,
            "detail": detail,
        }
        if self.registry.alerts.transition(rule, state, value, detail, payload):
            log.warning("%s: %s %s %s (threshold %s)", event, rule.model, rule.kind, value, rule.threshold)

    # ---- webhooks ------------------------------------------------------------------------------
    def deliver(self) -> None:
        """Send the due webhook deliveries (claimed, so one process sends each attempt)."""
        due = self.registry.alerts.claim_deliveries(lease=self.webhook_timeout * 2 + 5)
        if not due:
            return
        with httpx.Client(timeout=self.webhook_timeout, follow_redirects=False) as client:
            for delivery in due:
                try:
                    webhook.send(client, delivery)
                except (httpx.HTTPError, ValueError) as exc:
                    retry = (
                        webhook.backoff(delivery.attempts)
                        if delivery.attempts < self.webhook_attempts
                        else None
                    )
                    self.registry.alerts.failed(delivery.id, f"{type(exc).__name__}: {exc}", retry)
                    continue
                self.registry.alerts.delivered(delivery.id)
