"""Models and their versions: numbering, states, serving settings, metadata and the unload flag."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from modelport.errors import Conflict, NotFound
from modelport.limits import MAX_VERSION
from modelport.registry.changes import announce
from modelport.registry.db import Database, as_utc, utcnow
from modelport.registry.records import ChangeKind, FileEntry, ModelRecord, VersionRecord, VersionState
from modelport.registry.tables import (
    AliasHistoryRow,
    AliasRow,
    ModelRow,
    VersionFileRow,
    VersionRow,
)


class ModelVersions:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- models -------------------------------------------------------------------------------
    def create_model(self, name: str, *, by: str, description: str = "") -> ModelRecord:
        try:
            with self.db.tx() as s:
                row = ModelRow(
                    name=name, description=description, created_at=utcnow(), created_by=by, unloaded=False
                )
                s.add(row)
                s.flush()
                announce(s, ChangeKind.MODEL_CREATED, name)
                return model_record(row)
        except sa_exc.IntegrityError:
            raise Conflict(f"model {name!r} already exists", field="name") from None

    def ensure_model(self, name: str, *, by: str) -> ModelRecord:
        existing = self.find_model(name)
        if existing:
            return existing
        try:
            return self.create_model(name, by=by)
        except Conflict:
            return self.get_model(name)

    def find_model(self, name: str) -> ModelRecord | None:
        with self.db.tx() as s:
            row = s.scalar(select(ModelRow).where(ModelRow.name == name))
            return model_record(row) if row else None

    def get_model(self, name: str) -> ModelRecord:
        record = self.find_model(name)
        if record is None:
            raise NotFound(f"model {name!r} not found")
        return record

    def list_models(self) -> list[ModelRecord]:
        with self.db.tx() as s:
            return [model_record(r) for r in s.scalars(select(ModelRow).order_by(ModelRow.name))]

    def delete_model(self, name: str) -> list[VersionRecord]:
        """Delete a model with its versions, aliases and history; returns the versions removed."""
        with self.db.tx() as s:
            model = model_row(s, name)
            rows = s.scalars(_versions_of(model.id)).all()
            versions = [version_record(name, v) for v in rows]
            s.execute(delete(VersionFileRow).where(VersionFileRow.version_id.in_([v.id for v in rows])))
            for table in (AliasHistoryRow, AliasRow, VersionRow):
                s.execute(delete(table).where(table.model_id == model.id))
            s.delete(model)
            announce(s, ChangeKind.MODEL_DELETED, name)
            return versions

    def set_unloaded(self, name: str, unloaded: bool) -> ModelRecord:
        """Take a model out of service (or back in) for every serving process."""
        with self.db.tx() as s:
            row = model_row(s, name)
            row.unloaded = unloaded
            s.flush()
            announce(s, ChangeKind.MODEL_UNLOADED if unloaded else ChangeKind.MODEL_LOADED, name)
            return model_record(row)

    # ---- versions -----------------------------------------------------------------------------
    def add_version(
        self,
        model: str,
        *,
        sha256: str,
        size: int,
        manifest: Sequence[FileEntry],
        framework: str,
        by: str,
        config: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> VersionRecord:
        """Commit a ``pending`` version, numbered one past the highest number the model ever had (the
        model row's counter: concurrent pushes get distinct numbers, and a deleted number is never given
        again). Its files are recorded as references to their blobs in the same transaction."""
        with self.db.tx() as s:
            s.execute(
                update(ModelRow).where(ModelRow.name == model).values(last_version=ModelRow.last_version + 1)
            )
            m = model_row(s, model)
            s.refresh(m)
            row = VersionRow(
                model_id=m.id,
                number=m.last_version,
                state=VersionState.PENDING.value,
                sha256=sha256,
                size=size,
                framework=framework,
                manifest=[f.as_dict() for f in manifest],
                config=config or None,
                meta=metadata or None,
                created_at=utcnow(),
                created_by=by,
            )
            s.add(row)
            s.flush()
            s.add_all(VersionFileRow(version_id=row.id, sha256=d) for d in {f.sha256 for f in manifest})
            announce(s, ChangeKind.VERSION_ADDED, model, row.number)
            return version_record(model, row)

    def set_version_state(
        self,
        model: str,
        version: int,
        state: VersionState,
        *,
        signature: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> VersionRecord:
        with self.db.tx() as s:
            row = version_row(s, model, version)
            row.state = state.value
            row.signature = signature if signature is not None else row.signature
            row.error = error
            s.flush()
            announce(s, ChangeKind.VERSION_STATE, model, version)
            return version_record(model, row)

    def set_version_config(
        self, model: str, version: int, config: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]
    ) -> VersionRecord:
        """Replace the version's serving config, or apply ``config(current)`` to it (a merge) in the same
        transaction, the row locked, so concurrent merges never lose one another's keys."""
        with self.db.tx() as s:
            row = version_row(s, model, version)
            if callable(config):
                s.refresh(row, with_for_update=True)
                config = config(dict(row.config or {}))
            row.config = config or None
            s.flush()
            announce(s, ChangeKind.VERSION_CONFIG, model, version)
            return version_record(model, row)

    def update_metadata(self, model: str, version: int, facts: dict[str, Any]) -> VersionRecord:
        """Merge ``facts`` into the version's metadata (top-level keys replace earlier ones)."""
        with self.db.tx() as s:
            row = version_row(s, model, version)
            s.refresh(row, with_for_update=True)  # concurrent merges must not drop each other's keys
            row.meta = {**(row.meta or {}), **facts}
            s.flush()
            return version_record(model, row)

    def get_version(self, model: str, version: int) -> VersionRecord:
        with self.db.tx() as s:
            return version_record(model, version_row(s, model, version))

    def list_versions(self, model: str, *, state: VersionState | None = None) -> list[VersionRecord]:
        with self.db.tx() as s:
            m = model_row(s, model)
            query = _versions_of(m.id)
            if state is not None:
                query = query.where(VersionRow.state == state.value)
            return [version_record(model, r) for r in s.scalars(query)]

    def newest_ready(self, model: str) -> VersionRecord | None:
        with self.db.tx() as s:
            m = model_row(s, model)
            row = s.scalar(
                _versions_of(m.id)
                .where(VersionRow.state == VersionState.READY.value)
                .order_by(None)
                .order_by(VersionRow.number.desc())
                .limit(1)
            )
            return version_record(model, row) if row else None

    def pending_versions(self) -> list[VersionRecord]:
        with self.db.tx() as s:
            rows = s.execute(
                select(ModelRow.name, VersionRow)
                .join(VersionRow, VersionRow.model_id == ModelRow.id)
                .where(VersionRow.state == VersionState.PENDING.value)
            ).all()
            return [version_record(name, row) for name, row in rows]

    def delete_version(self, model: str, version: int) -> VersionRecord:
        with self.db.tx() as s:
            row = version_row(s, model, version)
            pointing = s.scalars(
                select(AliasRow.name).where(AliasRow.model_id == row.model_id, AliasRow.version == version)
            ).all()
            if pointing:
                raise Conflict(
                    f"version {version} of {model!r} is the target of alias(es) {', '.join(sorted(pointing))}"
                )
            record = version_record(model, row)
            s.execute(delete(VersionFileRow).where(VersionFileRow.version_id == row.id))
            s.delete(row)
            announce(s, ChangeKind.VERSION_DELETED, model, version)
            return record


# ---- shared by the registry's repositories ---------------------------------------------------------
def model_row(s: Session, name: str) -> ModelRow:
    row = s.scalar(select(ModelRow).where(ModelRow.name == name))
    if row is None:
        raise NotFound(f"model {name!r} not found")
    return row


def version_row(s: Session, model: str, version: int) -> VersionRow:
    if not 1 <= version <= MAX_VERSION:  # beyond the column's range no version can exist
        raise NotFound(f"version {version} of model {model!r} not found")
    m = model_row(s, model)
    row = s.scalar(select(VersionRow).where(VersionRow.model_id == m.id, VersionRow.number == version))
    if row is None:
        raise NotFound(f"version {version} of model {model!r} not found")
    return row


def _versions_of(model_id: int) -> Any:
    return select(VersionRow).where(VersionRow.model_id == model_id).order_by(VersionRow.number)


def model_record(row: ModelRow) -> ModelRecord:
    return ModelRecord(row.name, row.description, as_utc(row.created_at), row.created_by, bool(row.unloaded))


def version_record(model: str, row: VersionRow) -> VersionRecord:
    return VersionRecord(
        model=model,
        version=row.number,
        state=VersionState(row.state),
        sha256=row.sha256,
        size=row.size,
        framework=row.framework,
        signature=row.signature,
        manifest=tuple(FileEntry(f["path"], f["sha256"], f["size"]) for f in row.manifest),
        error=row.error,
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
        config=dict(row.config or {}),
        metadata=dict(row.meta or {}),
    )
