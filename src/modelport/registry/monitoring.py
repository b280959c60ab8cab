"""Monitoring state shared by every process: per-model settings, reference profiles, serving statistics
(one row per version, time bucket and process) and feedback. Alert rules live in ``registry.alerts``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from modelport.registry.db import Database, as_utc, changed, utcnow
from modelport.registry.models import model_row, version_row
from modelport.registry.tables import (
    FeedbackRow,
    ModelRow,
    MonitoringConfigRow,
    ServingStatsRow,
    VersionProfileRow,
)


@dataclass(frozen=True)
class MonitoringConfig:
    sample_rate: float = 0.0  # share of answered requests written to the prediction log
    reference_rows: int = 0  # logged predictions that make a version's reference profile (0: none)
    updated_at: datetime | None = None
    updated_by: str | None = None


@dataclass(frozen=True)
class StatsBucket:
    """What one process counted for one version over one bucket of time."""

    model: str
    version: int
    bucket: int  # epoch seconds of the bucket's start
    requests: int
    errors: int
    latency_sum: float
    latency_counts: list[int]


@dataclass(frozen=True)
class Feedback:
    request_id: str
    label: str | None
    value: float | None
    at: datetime


class Monitoring:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- settings -----------------------------------------------------------------------------
    def config(self, model: str) -> MonitoringConfig:
        with self.db.tx() as s:
            row = s.get(MonitoringConfigRow, model_row(s, model).id)
            if row is None:
                return MonitoringConfig()
            return MonitoringConfig(
                row.sample_rate, row.reference_rows, as_utc(row.updated_at), row.updated_by
            )

    def set_config(self, model: str, *, sample_rate: float, reference_rows: int, by: str) -> MonitoringConfig:
        with self.db.tx() as s:
            model_id = model_row(s, model).id
            row = s.get(MonitoringConfigRow, model_id)
            now = utcnow()
            if row is None:
                s.add(
                    MonitoringConfigRow(
                        model_id=model_id,
                        sample_rate=sample_rate,
                        reference_rows=reference_rows,
                        updated_at=now,
                        updated_by=by,
                    )
                )
            else:
                row.sample_rate, row.reference_rows = sample_rate, reference_rows
                row.updated_at, row.updated_by = now, by
            return MonitoringConfig(sample_rate, reference_rows, now, by)

    def configs(self) -> dict[str, MonitoringConfig]:
        """Every model that has settings, by name (the prediction log's rates, profile chores)."""
        query = select(ModelRow.name, MonitoringConfigRow).join(
            MonitoringConfigRow, MonitoringConfigRow.model_id == ModelRow.id
        )
        with self.db.tx() as s:
            return {
                name: MonitoringConfig(
                    row.sample_rate, row.reference_rows, as_utc(row.updated_at), row.updated_by
                )
                for name, row in s.execute(query)
            }

    # ---- reference profiles -------------------------------------------------------------------
    def profile(self, model: str, version: int) -> tuple[str, dict[str, Any]] | None:
        """``(source, profile)`` stored for the version, else None (a training job's profile is in the
        version's metadata instead)."""
        with self.db.tx() as s:
            row = s.get(VersionProfileRow, version_row(s, model, version).id)
            return None if row is None else (row.source, row.profile)

    def set_profile(
        self, model: str, version: int, source: str, profile: dict[str, Any], *, replace: bool = True
    ) -> bool:
        """Store a reference profile; with ``replace=False`` only when the version has none (profiles
        made from first predictions: whichever process gets there first). True if stored."""
        with self.db.tx() as s:
            version_id = version_row(s, model, version).id
            row = s.get(VersionProfileRow, version_id, with_for_update=True)
            if row is not None and not replace:
                return False
            if row is None:
                s.add(
                    VersionProfileRow(
                        version_id=version_id, source=source, profile=profile, created_at=utcnow()
                    )
                )
            else:
                row.source, row.profile, row.created_at = source, profile, utcnow()
            return True

    # ---- serving statistics -------------------------------------------------------------------
    def add_stats(self, origin: str, buckets: Sequence[StatsBucket]) -> None:
        """Record what process ``origin`` counted; a bucket it wrote before is added to (buckets of
        models deleted meanwhile are dropped)."""
        if not buckets:
            return
        with self.db.tx() as s:
            ids = _model_ids(s, {b.model for b in buckets})
            keys = [(ids[b.model], b.version, b.bucket) for b in buckets if b.model in ids]
            if not keys:
                return
            existing = {
                (r.model_id, r.version, r.bucket): r
                for r in s.scalars(
                    select(ServingStatsRow).where(
                        ServingStatsRow.origin == origin,
                        tuple_(ServingStatsRow.model_id, ServingStatsRow.version, ServingStatsRow.bucket).in_(
                            keys
                        ),
                    )
                )
            }
            for b in buckets:
                if b.model not in ids:
                    continue
                row = existing.get((ids[b.model], b.version, b.bucket))
                if row is None:
                    s.add(
                        ServingStatsRow(
                            model_id=ids[b.model],
                            version=b.version,
                            bucket=b.bucket,
                            origin=origin,
                            requests=b.requests,
                            errors=b.errors,
                            latency_sum=b.latency_sum,
                            latency_counts=list(b.latency_counts),
                        )
                    )
                    continue
                row.requests += b.requests
                row.errors += b.errors
                row.latency_sum += b.latency_sum
                row.latency_counts = [
                    a + c for a, c in zip(row.latency_counts, b.latency_counts, strict=True)
                ]

    def stats(self, model: str, since: int, until: int) -> list[StatsBucket]:
        """Every process's buckets of ``model`` starting in ``[since, until)``, unmerged."""
        with self.db.tx() as s:
            model_id = model_row(s, model).id
            query = select(ServingStatsRow).where(
                ServingStatsRow.model_id == model_id,
                ServingStatsRow.bucket >= since,
                ServingStatsRow.bucket < until,
            )
            return [
                StatsBucket(
                    model, r.version, r.bucket, r.requests, r.errors, r.latency_sum, list(r.latency_counts)
                )
                for r in s.scalars(query)
            ]

    def purge_stats(self, before: int) -> int:
        with self.db.tx() as s:
            return changed(s.execute(delete(ServingStatsRow).where(ServingStatsRow.bucket < before))) or 0

    # ---- feedback -----------------------------------------------------------------------------
    def add_feedback(self, model: str, items: Iterable[tuple[str, str | None, float | None]]) -> int:
        """``(request_id, label, value)`` outcomes; a request's later feedback replaces the earlier."""
        latest = {request_id: (label, value) for request_id, label, value in items}
        if not latest:
            return 0
        with self.db.tx() as s:
            model_id = model_row(s, model).id
            s.execute(
                delete(FeedbackRow).where(
                    FeedbackRow.model_id == model_id, FeedbackRow.request_id.in_(list(latest))
                )
            )
            now = utcnow()
            s.add_all(
                FeedbackRow(model_id=model_id, request_id=rid, label=label, value=value, at=now)
                for rid, (label, value) in latest.items()
            )
        return len(latest)

    def feedback(
        self, model: str, since: datetime, until: datetime | None = None, limit: int = 100_000
    ) -> list[Feedback]:
        """Feedback received in the window, newest first."""
        with self.db.tx() as s:
            query = (
                select(FeedbackRow)
                .where(FeedbackRow.model_id == model_row(s, model).id, FeedbackRow.at >= since)
                .order_by(FeedbackRow.at.desc())
                .limit(limit)
            )
            if until is not None:
                query = query.where(FeedbackRow.at < until)
            return [Feedback(r.request_id, r.label, r.value, as_utc(r.at)) for r in s.scalars(query)]

    def purge_feedback(self, before: datetime) -> int:
        with self.db.tx() as s:
            return changed(s.execute(delete(FeedbackRow).where(FeedbackRow.at < before))) or 0


def _model_ids(s: Session, names: Iterable[str]) -> dict[str, int]:
    return dict(s.execute(select(ModelRow.name, ModelRow.id).where(ModelRow.name.in_(list(names)))).all())
