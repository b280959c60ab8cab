"""API key records (hashes, scopes, limits); the secrets themselves are never stored.

Someone must always be able to manage keys: revoking the last active admin key (unrevoked, unexpired,
with the ``admin`` scope) is refused unless the caller insists, checked in the revoking transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from modelport.errors import Conflict, NotFound
from modelport.registry.changes import announce
from modelport.registry.db import Database, as_utc, utcnow
from modelport.registry.records import ChangeKind, KeyRecord
from modelport.registry.tables import ApiKeyRow

ADMIN_SCOPE = "admin"


class Keys:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
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
            with self.db.tx() as s:
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
                announce(s, ChangeKind.KEY_CHANGED)
                return key_record(row)
        except sa_exc.IntegrityError:
            raise Conflict(f"key {name!r} already exists", field="name") from None

    def find_by_hash(self, key_hash: str) -> KeyRecord | None:
        with self.db.tx() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
            return key_record(row) if row else None

    def all(self) -> list[KeyRecord]:
        with self.db.tx() as s:
            return [key_record(r) for r in s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]

    def active_admins(self) -> list[KeyRecord]:
        """Keys that can manage keys now: not revoked, not expired, with the admin scope."""
        now = utcnow()
        with self.db.tx() as s:
            rows = s.scalars(select(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None)).order_by(ApiKeyRow.id))
            return [key_record(r) for r in rows if _active_admin(r, now)]

    def revoke(self, name: str, *, allow_last_admin: bool = False) -> KeyRecord:
        """Revoke a key (again: a no-op). The last active admin key is kept unless ``allow_last_admin``."""
        with self.db.tx() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.name == name))
            if row is None:
                raise NotFound(f"key {name!r} not found")
            now = utcnow()
            if not allow_last_admin and _active_admin(row, now):
                # Every live key locked, in id order (no deadlock) and re-read: two revocations of the
                # last two admin keys cannot both pass. (SQLite serialises writers anyway.)
                live = s.scalars(
                    select(ApiKeyRow)
                    .where(ApiKeyRow.revoked_at.is_(None))
                    .order_by(ApiKeyRow.id)
                    .with_for_update()
                    .execution_options(populate_existing=True)
                ).all()
                if not any(_active_admin(other, now) for other in live if other.id != row.id):
                    raise Conflict(
                        f"key {name!r} is the last active admin key: without it no one can manage keys "
                        "or read the audit log. Create another admin key first, or revoke it with "
                        "?force=true (the next start then creates a new bootstrap admin key)",
                        field="name",
                    )
            row.revoked_at = row.revoked_at or now
            s.flush()
            announce(s, ChangeKind.KEY_CHANGED)
            return key_record(row)


def _active_admin(row: ApiKeyRow, now: datetime) -> bool:
    return (
        row.revoked_at is None
        and ADMIN_SCOPE in row.scopes
        and (row.expires_at is None or as_utc(row.expires_at) > now)
    )


def key_record(row: ApiKeyRow) -> KeyRecord:
    return KeyRecord(
        row.id,
        row.name,
        row.prefix,
        frozenset(row.scopes),
        as_utc(row.created_at),
        as_utc(row.revoked_at) if row.revoked_at else None,
        as_utc(row.expires_at) if row.expires_at else None,
        row.models,
        row.rate_limit,
    )
