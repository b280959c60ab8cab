"""The job queue: submission, claiming (once cluster-wide), heartbeats, progress, events, cancel, end.

Claims serialise on the ``jobs`` counter row (a row lock on PostgreSQL; SQLite serialises writers), so
two processes never take the same job and the number running stays within the cluster-wide limit. Every
change of a job reads its row ``FOR UPDATE``: a cancel, a claim, an end and an interruption of one job
never interleave. Events are numbered under the ``job_events`` counter row's lock, so they commit in
the order of their ids and a follower that has read id N has read every event before it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from modelport.errors import Conflict, NotFound
from modelport.registry.db import Database, as_utc, utcnow
from modelport.registry.tables import CounterRow, JobEventRow, JobRow, ModelRow, VersionRow


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
INTERRUPTED = "interrupted: the server running the job stopped before it finished"


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    state: JobState
    model: str
    dataset: str
    dataset_version: int | None
    spec: dict[str, Any]
    progress: float
    step: str
    metrics: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    version: int | None
    cancel_requested: bool
    created_at: datetime
    created_by: str
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class JobEvent:
    seq: int
    job_id: int
    at: datetime
    kind: str
    data: dict[str, Any]


class Jobs:
    def __init__(self, db: Database) -> None:
        self.db = db

    def submit(
        self,
        *,
        kind: str,
        model: str,
        dataset: str,
        dataset_version: int | None,
        spec: dict[str, Any],
        by: str,
    ) -> JobRecord:
        with self.db.tx() as s:
            row = JobRow(
                kind=kind,
                state=JobState.QUEUED.value,
                model=model,
                dataset=dataset,
                dataset_version=dataset_version,
                spec=spec,
                progress=0.0,
                step="queued",
                cancel_requested=False,
                created_at=utcnow(),
                created_by=by,
            )
            s.add(row)
            s.flush()
            _event(s, row.id, "state", {"state": "queued"})
            return _record(row)

    def get(self, job_id: int) -> JobRecord:
        with self.db.tx() as s:
            return _record(_row(s, job_id))

    def recent(
        self, *, state: JobState | None = None, model: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        query = select(JobRow).order_by(JobRow.id.desc()).limit(limit)
        if state is not None:
            query = query.where(JobRow.state == state.value)
        if model is not None:
            query = query.where(JobRow.model == model)
        with self.db.tx() as s:
            return [_record(r) for r in s.scalars(query)]

    def claim(self, owner: str, max_running: int) -> JobRecord | None:
        """The oldest queued job, now running under ``owner``; None when none waits or enough run."""
        with self.db.tx() as s:  # a plain read first: an idle queue costs every process no write
            if s.scalar(select(JobRow.id).where(JobRow.state == "queued").limit(1)) is None:
                return None
        with self.db.tx() as s:
            s.execute(update(CounterRow).where(CounterRow.name == "jobs").values(value=CounterRow.value + 1))
            running = s.scalar(select(func.count()).select_from(JobRow).where(JobRow.state == "running"))
            if (running or 0) >= max_running:
                return None
            row = s.scalar(
                select(JobRow).where(JobRow.state == "queued").order_by(JobRow.id).limit(1).with_for_update()
            )
            if row is None:
                return None
            now = utcnow()
            row.state, row.owner, row.started_at, row.heartbeat_at = "running", owner, now, now
            row.step = "starting"
            _event(s, row.id, "state", {"state": "running"})
            return _record(row)

    def heartbeat(
        self,
        job_id: int,
        owner: str,
        *,
        progress: float | None = None,
        step: str | None = None,
        metrics: dict[str, Any] | None = None,
        events: Iterable[tuple[str, dict[str, Any]]] = (),
    ) -> bool:
        """Record that ``owner`` still runs the job, with its progress and new events; returns whether a
        cancel was asked for (also True for a job ``owner`` no longer holds: it was declared interrupted)."""
        with self.db.tx() as s:
            row = s.scalar(
                select(JobRow).where(JobRow.id == job_id, JobRow.owner == owner, JobRow.state == "running")
            )
            if row is None:
                return True  # not ours any more: stop it
            row.heartbeat_at = utcnow()
            if progress is not None:
                row.progress = max(0.0, min(1.0, progress))
            if step is not None:
                row.step = step[:256]
            if metrics is not None:
                row.metrics = metrics
            for kind, data in events:
                _event(s, job_id, kind, data)
            return row.cancel_requested

    def finish(
        self,
        job_id: int,
        owner: str,
        state: JobState,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        version: int | None = None,
    ) -> JobRecord | None:
        """End a running job ``owner`` holds; None if it no longer holds it."""
        with self.db.tx() as s:
            row = s.scalar(
                select(JobRow).where(JobRow.id == job_id, JobRow.owner == owner, JobRow.state == "running")
            )
            if row is None:
                return None
            _end(s, row, state, error)
            if state is JobState.SUCCEEDED:
                row.progress, row.step = 1.0, "done"
            row.result, row.version = result, version
            return _record(row)

    def cancel(self, job_id: int) -> JobRecord:
        """A queued job ends now; a running one is stopped by its owner within a heartbeat."""
        with self.db.tx() as s:
            row = _row(s, job_id, lock=True)
            if row.state in FINAL:
                raise Conflict(f"job {job_id} already {row.state}")
            if row.state == JobState.QUEUED:
                _end(s, row, JobState.CANCELLED, "cancelled before it started")
            elif not row.cancel_requested:
                row.cancel_requested = True
                _event(s, row.id, "log", {"message": "cancel requested"})
            return _record(row)

    def interrupt(self, *, stale_before: datetime | None) -> list[JobRecord]:
        """Running jobs whose heartbeat is older than ``stale_before`` (None: every running job, for a
        single host starting up) are failed as interrupted."""
        with self.db.tx() as s:
            query = select(JobRow).where(JobRow.state == "running")
            if stale_before is not None:
                query = query.where(JobRow.heartbeat_at < stale_before)
            rows = list(s.scalars(query.with_for_update()))
            for row in rows:
                _end(s, row, JobState.FAILED, INTERRUPTED)
            return [_record(r) for r in rows]

    def touch(self, job_ids: Iterable[int], owner: str) -> None:
        """Refresh the heartbeat of jobs ``owner`` holds (while it fetches their inputs or publishes their
        results, when no process reports)."""
        ids = list(job_ids)
        if ids:
            with self.db.tx() as s:
                s.execute(
                    update(JobRow)
                    .where(JobRow.id.in_(ids), JobRow.owner == owner, JobRow.state == "running")
                    .values(heartbeat_at=utcnow())
                )

    def events(self, job_id: int, *, after: int = 0, limit: int = 500) -> list[JobEvent]:
        with self.db.tx() as s:
            _row(s, job_id)
            rows = s.scalars(
                select(JobEventRow)
                .where(JobEventRow.job_id == job_id, JobEventRow.id > after)
                .order_by(JobEventRow.id)
                .limit(limit)
            )
            return [JobEvent(r.id, r.job_id, as_utc(r.at), r.kind, dict(r.data)) for r in rows]

    def add_event(self, job_id: int, kind: str, data: dict[str, Any]) -> None:
        with self.db.tx() as s:
            _event(s, job_id, kind, data)

    def using_dataset(self, name: str, version: int | None = None) -> list[int]:
        """Jobs that need the dataset (version): waiting or running, or whose model version still exists
        (its lineage names the dataset)."""
        uses = JobRow.dataset == name
        if version is not None:
            uses = and_(uses, JobRow.dataset_version == version)
        lineage = (
            select(VersionRow.id)
            .join(ModelRow, ModelRow.id == VersionRow.model_id)
            .where(ModelRow.name == JobRow.model, VersionRow.number == JobRow.version)
            .exists()
        )
        with self.db.tx() as s:
            return list(
                s.scalars(
                    select(JobRow.id).where(uses, or_(JobRow.state.in_(["queued", "running"]), lineage))
                )
            )


def _row(s: Session, job_id: int, *, lock: bool = False) -> JobRow:
    row = s.get(JobRow, job_id, with_for_update=lock)
    if row is None:
        raise NotFound(f"job {job_id} not found")
    return row


def _end(s: Session, row: JobRow, state: JobState, error: str | None) -> None:
    row.state, row.error, row.finished_at, row.owner = state.value, error, utcnow(), None
    _event(s, row.id, "state", {"state": state.value, **({"error": error} if error else {})})


def _held(s: Session, job_id: int, owner: str) -> JobRow | None:
    return s.scalar(
        select(JobRow)
        .where(JobRow.id == job_id, JobRow.owner == owner, JobRow.state == "running")
        .with_for_update()
    )


def _event(s: Session, job_id: int, kind: str, data: dict[str, Any]) -> None:
    # held to the commit: event ids commit in order (see the module docstring)
    s.execute(update(CounterRow).where(CounterRow.name == "job_events").values(value=CounterRow.value + 1))
    s.add(JobEventRow(job_id=job_id, at=utcnow(), kind=kind, data=data))


def _record(row: JobRow) -> JobRecord:
    return JobRecord(
        row.id,
        row.kind,
        JobState(row.state),
        row.model,
        row.dataset,
        row.dataset_version,
        dict(row.spec),
        row.progress,
        row.step,
        row.metrics,
        row.result,
        row.error,
        row.version,
        row.cancel_requested,
        as_utc(row.created_at),
        row.created_by,
        None if row.started_at is None else as_utc(row.started_at),
        None if row.finished_at is None else as_utc(row.finished_at),
    )
