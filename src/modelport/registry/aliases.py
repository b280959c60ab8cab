"""Aliases: named pointers to versions, with the history that rollback walks back.

Alias names are names that are not all digits (``names.check_alias``): a reference of digits is a
version number.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from modelport.errors import Conflict, NotFound
from modelport.names import check_alias
from modelport.registry.changes import announce
from modelport.registry.db import Database, as_utc, utcnow
from modelport.registry.models import model_row, version_row
from modelport.registry.records import AliasRecord, ChangeKind, HistoryRecord, VersionState
from modelport.registry.tables import AliasHistoryRow, AliasRow, ModelRow, VersionRow

ANYWHERE = -1  # ``set(expected=...)``: move the alias wherever it points now


class Aliases:
    def __init__(self, db: Database) -> None:
        self.db = db

    def set(
        self, model: str, alias: str, version: int, *, by: str, expected: int | None = ANYWHERE
    ) -> AliasRecord:
        """Point ``alias`` at ``version``. ``expected``: only if the alias points at that version now (None:
        only if it does not exist), checked in the same transaction (a Conflict otherwise)."""
        check_alias(alias)
        try:
            with self.db.tx() as s:
                target = version_row(s, model, version)
                if target.state != VersionState.READY.value:
                    raise Conflict(
                        f"version {version} of {model!r} is {target.state}, not ready", field="version"
                    )
                if expected != ANYWHERE:
                    current = s.scalar(
                        select(AliasRow.version)
                        .where(AliasRow.model_id == target.model_id, AliasRow.name == alias)
                        .with_for_update()
                    )
                    if current != expected:
                        raise Conflict(f"alias {alias!r} of {model!r} moved to version {current}")
                return _move(s, model, target.model_id, alias, version, "promote", by)
        except sa_exc.IntegrityError:  # created by someone else meanwhile (expected it absent)
            raise Conflict(f"alias {alias!r} of {model!r} was created meanwhile") from None

    def rollback_target(self, model: str, alias: str) -> int:
        """The version a rollback of ``alias`` would point at, without moving it."""
        with self.db.tx() as s:
            return _rollback_plan(s, model, alias)[0].version

    def rollback(self, model: str, alias: str, *, by: str) -> AliasRecord:
        """Pop the alias's newest promotion and point it at the one before (skipping deleted versions)."""
        with self.db.tx() as s:
            target, popped = _rollback_plan(s, model, alias)
            for entry in popped:
                entry.undone = True
            return _move(s, model, target.model_id, alias, target.version, "rollback", by)

    def delete(self, model: str, alias: str, *, by: str) -> AliasRecord:
        """Remove the alias; its history stays readable and ends with a ``delete`` entry, and its
        rollback stack is cleared (an alias created again later starts afresh). Announced as a move, so
        serving processes drop the routes through it."""
        with self.db.tx() as s:
            m = model_row(s, model)
            row = s.scalar(select(AliasRow).where(AliasRow.model_id == m.id, AliasRow.name == alias))
            if row is None:
                raise NotFound(f"alias {alias!r} of {model!r} not found")
            record = _alias(model, row)
            s.execute(
                update(AliasHistoryRow)
                .where(AliasHistoryRow.model_id == m.id, AliasHistoryRow.alias == alias)
                .values(undone=True)
            )
            s.add(
                AliasHistoryRow(
                    model_id=m.id,
                    alias=alias,
                    version=row.version,
                    action="delete",
                    undone=True,
                    at=utcnow(),
                    by=by,
                )
            )
            s.delete(row)
            s.flush()
            announce(s, ChangeKind.ALIAS_MOVED, model, record.version)
            return record

    def of_model(self, model: str) -> list[AliasRecord]:
        with self.db.tx() as s:
            m = model_row(s, model)
            rows = s.scalars(select(AliasRow).where(AliasRow.model_id == m.id).order_by(AliasRow.name))
            return [_alias(model, r) for r in rows]

    def find(self, model: str, alias: str) -> AliasRecord | None:
        with self.db.tx() as s:
            row = s.scalar(
                select(AliasRow)
                .join(ModelRow, ModelRow.id == AliasRow.model_id)
                .where(ModelRow.name == model, AliasRow.name == alias)
            )
            return _alias(model, row) if row else None

    def history(self, model: str, alias: str) -> list[HistoryRecord]:
        with self.db.tx() as s:
            m = model_row(s, model)
            rows = s.scalars(
                select(AliasHistoryRow)
                .where(AliasHistoryRow.model_id == m.id, AliasHistoryRow.alias == alias)
                .order_by(AliasHistoryRow.id.desc())
            ).all()
            if not rows:
                raise NotFound(f"alias {alias!r} of {model!r} not found")
            return [HistoryRecord(r.version, r.action, as_utc(r.at), r.by) for r in rows]


def _move(
    s: Session, model: str, model_id: int, alias: str, version: int, action: str, by: str
) -> AliasRecord:
    """Point the alias, append to its history and announce the move, in the caller's transaction."""
    now = utcnow()
    row = s.scalar(select(AliasRow).where(AliasRow.model_id == model_id, AliasRow.name == alias))
    if row is None:
        row = AliasRow(model_id=model_id, name=alias)
        s.add(row)
    row.version, row.updated_at, row.updated_by = version, now, by
    s.add(
        AliasHistoryRow(
            model_id=model_id, alias=alias, version=version, action=action, undone=False, at=now, by=by
        )
    )
    s.flush()
    announce(s, ChangeKind.ALIAS_MOVED, model, version)
    return _alias(model, row)


def _rollback_plan(s: Session, model: str, alias: str) -> tuple[AliasHistoryRow, list[AliasHistoryRow]]:
    m = model_row(s, model)
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


def _alias(model: str, row: AliasRow) -> AliasRecord:
    return AliasRecord(model, row.name, row.version, as_utc(row.updated_at), row.updated_by)
