"""The registry: every control-plane read and write, each change in one transaction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from modelport.errors import Conflict, NotFound
from modelport.registry.records import (
    REQUEST_SOURCE,
    AliasRecord,
    AuditRecord,
    FileEntry,
    HistoryRecord,
    KeyRecord,
    ModelRecord,
    VersionRecord,
    VersionState,
)
from modelport.registry.tables import (
    AliasHistoryRow,
    AliasRow,
    ApiKeyRow,
    AuditRow,
    ModelRow,
    VersionRow,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Registry:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # ---- models -------------------------------------------------------------------------------
    def create_model(self, name: str, *, by: str, description: str = "") -> ModelRecord:
        try:
            with self._tx() as s:
                row = ModelRow(name=name, description=description, created_at=utcnow(), created_by=by)
                s.add(row)
                s.flush()
                return _model(row)
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
        with self._tx() as s:
            row = s.scalar(select(ModelRow).where(ModelRow.name == name))
            return _model(row) if row else None

    def get_model(self, name: str) -> ModelRecord:
        record = self.find_model(name)
        if record is None:
            raise NotFound(f"model {name!r} not found")
        return record

    def list_models(self) -> list[ModelRecord]:
        with self._tx() as s:
            return [_model(r) for r in s.scalars(select(ModelRow).order_by(ModelRow.name))]

    def delete_model(self, name: str) -> list[VersionRecord]:
        """Delete a model with its versions, aliases and history; returns the versions removed."""
        with self._tx() as s:
            model = self._model_row(s, name)
            versions = [_version(name, v) for v in s.scalars(_versions_of(model.id))]
            for table in (AliasHistoryRow, AliasRow, VersionRow):
                s.execute(delete(table).where(table.model_id == model.id))
            s.delete(model)
            return versions

    # ---- versions -----------------------------------------------------------------------------
    def add_version(
        self,
        model: str,
        *,
        sha256: str,
        size: int,
        manifest: Sequence[FileEntry],
        by: str,
        framework: str | None = None,
        state: VersionState = VersionState.PENDING,
        signature: dict[str, Any] | None = None,
        error: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> VersionRecord:
        """Commit a version row, numbered one past the newest; concurrent pushes get distinct numbers."""
        for _attempt in range(20):
            try:
                with self._tx() as s:
                    m = self._model_row(s, model)
                    newest = s.scalar(select(func.max(VersionRow.number)).where(VersionRow.model_id == m.id))
                    row = VersionRow(
                        model_id=m.id,
                        number=(newest or 0) + 1,
                        state=state.value,
                        sha256=sha256,
                        size=size,
                        framework=framework,
                        signature=signature,
                        manifest=[f.as_dict() for f in manifest],
                        error=error,
                        config=config or None,
                        created_at=utcnow(),
                        created_by=by,
                    )
                    s.add(row)
                    s.flush()
                    return _version(model, row)
            except sa_exc.IntegrityError:
                continue  # another writer took that number (PostgreSQL); try the next one
        raise Conflict(f"could not allocate a version number for {model!r}")

    def set_version_state(
        self,
        model: str,
        version: int,
        state: VersionState,
        *,
        framework: str | None = None,
        signature: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> VersionRecord:
        with self._tx() as s:
            row = self._version_row(s, model, version)
            row.state = state.value
            row.framework = framework or row.framework
            row.signature = signature if signature is not None else row.signature
            row.error = error
            s.flush()
            return _version(model, row)

    def set_version_config(self, model: str, version: int, config: dict[str, Any]) -> VersionRecord:
        with self._tx() as s:
            row = self._version_row(s, model, version)
            row.config = config or None
            s.flush()
            return _version(model, row)

    def get_version(self, model: str, version: int) -> VersionRecord:
        with self._tx() as s:
            return _version(model, self._version_row(s, model, version))

    def list_versions(self, model: str, *, state: VersionState | None = None) -> list[VersionRecord]:
        with self._tx() as s:
            m = self._model_row(s, model)
            query = _versions_of(m.id)
            if state is not None:
                query = query.where(VersionRow.state == state.value)
            return [_version(model, r) for r in s.scalars(query)]

    def pending_versions(self) -> list[VersionRecord]:
        with self._tx() as s:
            rows = s.execute(
                select(ModelRow.name, VersionRow)
                .join(VersionRow, VersionRow.model_id == ModelRow.id)
                .where(VersionRow.state == VersionState.PENDING.value)
            ).all()
            return [_version(name, row) for name, row in rows]

    def delete_version(self, model: str, version: int) -> VersionRecord:
        with self._tx() as s:
            row = self._version_row(s, model, version)
            pointing = s.scalars(
                select(AliasRow.name).where(AliasRow.model_id == row.model_id, AliasRow.version == version)
            ).all()
            if pointing:
                raise Conflict(
                    f"version {version} of {model!r} is the target of alias(es) {', '.join(sorted(pointing))}"
                )
            record = _version(model, row)
            s.delete(row)
            return record

    def referenced_digests(self) -> set[str]:
        with self._tx() as s:
            return {f["sha256"] for manifest in s.scalars(select(VersionRow.manifest)) for f in manifest}

    # ---- aliases ------------------------------------------------------------------------------
    def set_alias(self, model: str, alias: str, version: int, *, by: str) -> AliasRecord:
        with self._tx() as s:
            target = self._version_row(s, model, version)
            if target.state != VersionState.READY.value:
                raise Conflict(
                    f"version {version} of {model!r} is {target.state}, not ready", field="version"
                )
            now = utcnow()
            row = self._point(s, target.model_id, alias, version, now, by)
            s.add(
                AliasHistoryRow(
                    model_id=target.model_id,
                    alias=alias,
                    version=version,
                    action="promote",
                    undone=False,
                    at=now,
                    by=by,
                )
            )
            return _alias(model, row)

    def rollback_target(self, model: str, alias: str) -> int:
        """The version a rollback of ``alias`` would point at, without moving it."""
        with self._tx() as s:
            return self._rollback_plan(s, model, alias)[0].version

    def rollback_alias(self, model: str, alias: str, *, by: str) -> AliasRecord:
        """Pop the alias's newest promotion and point it at the one before (skipping deleted versions)."""
        with self._tx() as s:
            target, popped = self._rollback_plan(s, model, alias)
            for entry in popped:
                entry.undone = True
            now = utcnow()
            row = self._point(s, target.model_id, alias, target.version, now, by)
            s.add(
                AliasHistoryRow(
                    model_id=target.model_id,
                    alias=alias,
                    version=target.version,
                    action="rollback",
                    undone=False,
                    at=now,
                    by=by,
                )
            )
            return _alias(model, row)

    def _rollback_plan(
        self, s: Session, model: str, alias: str
    ) -> tuple[AliasHistoryRow, list[AliasHistoryRow]]:
        m = self._model_row(s, model)
        current = s.scalar(select(AliasRow).where(AliasRow.model_id == m.id, AliasRow.name == alias))
        if current is None:
            raise NotFound(f"alias {alias!r} of {model!r} not found")
        stack = s.scalars(
            select(AliasHistoryRow)
            .where(
                AliasHistoryRow.model_id == m.id,
                AliasHistoryRow.alias == alias,
                AliasHistoryRow.action == "promote",
                AliasHistoryRow.undone.is_(False),
            )
            .order_by(AliasHistoryRow.id.desc())
        )
        ready = set(
            s.scalars(
                select(VersionRow.number).where(
                    VersionRow.model_id == m.id, VersionRow.state == VersionState.READY.value
                )
            )
        )
        popped: list[AliasHistoryRow] = []
        for entry in stack:  # newest first; drop the current target and anything no longer ready
            if entry.version != current.version and entry.version in ready:
                return entry, popped
            popped.append(entry)
        raise Conflict(f"alias {alias!r} of {model!r} has no earlier version to roll back to")

    def list_aliases(self, model: str) -> list[AliasRecord]:
        with self._tx() as s:
            m = self._model_row(s, model)
            rows = s.scalars(select(AliasRow).where(AliasRow.model_id == m.id).order_by(AliasRow.name))
            return [_alias(model, r) for r in rows]

    def find_alias(self, model: str, alias: str) -> AliasRecord | None:
        with self._tx() as s:
            row = s.scalar(
                select(AliasRow)
                .join(ModelRow, ModelRow.id == AliasRow.model_id)
                .where(ModelRow.name == model, AliasRow.name == alias)
            )
            return _alias(model, row) if row else None

    def alias_history(self, model: str, alias: str) -> list[HistoryRecord]:
        with self._tx() as s:
            m = self._model_row(s, model)
            rows = s.scalars(
                select(AliasHistoryRow)
                .where(AliasHistoryRow.model_id == m.id, AliasHistoryRow.alias == alias)
                .order_by(AliasHistoryRow.id.desc())
            ).all()
            if not rows:
                raise NotFound(f"alias {alias!r} of {model!r} not found")
            return [HistoryRecord(r.version, r.action, _utc(r.at), r.by) for r in rows]

    # ---- keys ---------------------------------------------------------------------------------
    def create_key(
        self,
        name: str,
        *,
        key_hash: str,
        prefix: str,
        scopes: Sequence[str],
        expires_at: datetime | None = None,
        models: str | None = None,
        rate_limit: float | None = None,
    ) -> KeyRecord:
        try:
            with self._tx() as s:
                row = ApiKeyRow(
                    name=name,
                    key_hash=key_hash,
                    prefix=prefix,
                    scopes=sorted(scopes),
                    created_at=utcnow(),
                    expires_at=expires_at,
                    models=models,
                    rate_limit=rate_limit,
                )
                s.add(row)
                s.flush()
                return _key(row)
        except sa_exc.IntegrityError:
            raise Conflict(f"key {name!r} already exists", field="name") from None

    def upsert_key(self, name: str, *, key_hash: str, prefix: str, scopes: Sequence[str]) -> KeyRecord:
        """Create or replace a key by name (the bootstrap admin key follows its configured secret)."""
        with self._tx() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.name == name))
            if row is None:
                row = ApiKeyRow(name=name, created_at=utcnow())
                s.add(row)
            row.key_hash, row.prefix, row.scopes, row.revoked_at = key_hash, prefix, sorted(scopes), None
            s.flush()
            return _key(row)

    def find_key(self, key_hash: str) -> KeyRecord | None:
        with self._tx() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
            return _key(row) if row else None

    def list_keys(self) -> list[KeyRecord]:
        with self._tx() as s:
            return [_key(r) for r in s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]

    def revoke_key(self, name: str) -> KeyRecord:
        with self._tx() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.name == name))
            if row is None:
                raise NotFound(f"key {name!r} not found")
            row.revoked_at = row.revoked_at or utcnow()
            s.flush()
            return _key(row)

    # ---- audit --------------------------------------------------------------------------------
    def record_audit(
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
        with self._tx() as s:
            s.add(
                AuditRow(
                    at=utcnow(),
                    actor=actor,
                    action=action,
                    target=target,
                    result=result,
                    details=details or {},
                )
            )

    def generation(self) -> int:
        """Moves on every change, since every change is audited: replicas poll it to refresh caches."""
        with self._tx() as s:
            return int(s.scalar(select(func.max(AuditRow.id))) or 0)

    def list_audit(
        self,
        *,
        limit: int = 100,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
    ) -> list[AuditRecord]:
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if actor:
            query = query.where(AuditRow.actor == actor)
        if action:
            query = query.where(AuditRow.action == action)
        if target:
            query = query.where(AuditRow.target == target)
        with self._tx() as s:
            return [
                AuditRecord(r.id, _utc(r.at), r.actor, r.action, r.target, r.result, r.details)
                for r in s.scalars(query)
            ]

    # ---- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _model_row(s: Session, name: str) -> ModelRow:
        row = s.scalar(select(ModelRow).where(ModelRow.name == name))
        if row is None:
            raise NotFound(f"model {name!r} not found")
        return row

    def _version_row(self, s: Session, model: str, version: int) -> VersionRow:
        m = self._model_row(s, model)
        row = s.scalar(select(VersionRow).where(VersionRow.model_id == m.id, VersionRow.number == version))
        if row is None:
            raise NotFound(f"version {version} of model {model!r} not found")
        return row

    @staticmethod
    def _point(s: Session, model_id: int, alias: str, version: int, now: datetime, by: str) -> AliasRow:
        row = s.scalar(select(AliasRow).where(AliasRow.model_id == model_id, AliasRow.name == alias))
        if row is None:
            row = AliasRow(model_id=model_id, name=alias)
            s.add(row)
        row.version, row.updated_at, row.updated_by = version, now, by
        s.flush()
        return row


def _versions_of(model_id: int) -> Any:
    return select(VersionRow).where(VersionRow.model_id == model_id).order_by(VersionRow.number)


def _model(row: ModelRow) -> ModelRecord:
    return ModelRecord(row.name, row.description, _utc(row.created_at), row.created_by)


def _version(model: str, row: VersionRow) -> VersionRecord:
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
        created_at=_utc(row.created_at),
        created_by=row.created_by,
        config=dict(row.config or {}),
    )


def _alias(model: str, row: AliasRow) -> AliasRecord:
    return AliasRecord(model, row.name, row.version, _utc(row.updated_at), row.updated_by)


def _key(row: ApiKeyRow) -> KeyRecord:
    return KeyRecord(
        row.id,
        row.name,
        row.prefix,
        frozenset(row.scopes),
        _utc(row.created_at),
        _utc(row.revoked_at) if row.revoked_at else None,
        _utc(row.expires_at) if row.expires_at else None,
        row.models,
        row.rate_limit,
    )
