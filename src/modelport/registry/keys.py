"""API key records (hashes, scopes, limits); the secrets themselves are never stored."""

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
                return _key(row)
        except sa_exc.IntegrityError:
            raise Conflict(f"key {name!r} already exists", field="name") from None

    def upsert(self, name: str, *, key_hash: str, prefix: str, scopes: Sequence[str]) -> KeyRecord:
        """Create or replace a key by name (the bootstrap admin key follows its configured secret)."""
        with self.db.tx() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.name == name))
            if row is None:
                row = ApiKeyRow(name=name, created_at=utcnow())
                s.add(row)
            row.key_hash, row.prefix, row.scopes, row.revoked_at = key_hash, prefix, sorted(scopes), None
            s.flush()
            announce(s, ChangeKind.KEY_CHANGED)
            return _key(row)

    def find_by_hash(self, key_hash: str) -> KeyRecord | None:
        with self.db.tx() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
            return _key(row) if row else None

    def all(self) -> list[KeyRecord]:
        with self.db.tx() as s:
            return [_key(r) for r in s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]

    def revoke(self, name: str) -> KeyRecord:
        with self.db.tx() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.name == name))
            if row is None:
                raise NotFound(f"key {name!r} not found")
            row.revoked_at = row.revoked_at or utcnow()
            s.flush()
            announce(s, ChangeKind.KEY_CHANGED)
            return _key(row)


def _key(row: ApiKeyRow) -> KeyRecord:
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
