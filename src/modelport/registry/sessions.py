"""Dashboard sessions: a sign-in with an API key, kept as a row until it expires or is signed out.

The cookie holds a random token; the row is named by its sha256, so the table alone lets no one sign in.
A session is read together with its key's current record: the key's scopes and model limits apply to
every request, and a revoked or expired key ends the session at once (its row is deleted on sight).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from modelport.registry.db import Database, as_utc, utcnow
from modelport.registry.keys import key_record
from modelport.registry.records import KeyRecord
from modelport.registry.tables import ApiKeyRow, UiSessionRow


@dataclass(frozen=True)
class SessionRecord:
    id: str  # the sha256 hex of the cookie's token
    key: KeyRecord  # the key's record as it is now
    csrf: str
    created_at: datetime
    expires_at: datetime

    def expired(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) >= self.expires_at


class Sessions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, session_id: str, *, key_id: int, csrf: str, expires_at: datetime) -> SessionRecord:
        with self.db.tx() as s:
            key = s.get(ApiKeyRow, key_id)
            if key is None:  # revoked keys stay as rows: only a key deleted meanwhile lands here
                raise LookupError(f"key {key_id} not found")
            row = UiSessionRow(
                id=session_id, key_id=key_id, csrf=csrf, created_at=utcnow(), expires_at=expires_at
            )
            s.add(row)
            s.flush()
            return _session(row, key)

    def find(self, session_id: str) -> SessionRecord | None:
        """The live session with its key's current record; None when there is none. An expired session,
        or one whose key was revoked or expired, is deleted and reported as absent."""
        now = utcnow()
        with self.db.tx() as s:
            found = s.execute(
                select(UiSessionRow, ApiKeyRow)
                .join(ApiKeyRow, ApiKeyRow.id == UiSessionRow.key_id)
                .where(UiSessionRow.id == session_id)
            ).first()
            if found is None:
                return None
            record = _session(found[0], found[1])
            key = record.key
            if (
                record.expired(now)
                or key.revoked_at is not None
                or (key.expires_at is not None and now >= key.expires_at)
            ):
                s.execute(delete(UiSessionRow).where(UiSessionRow.id == session_id))
                return None
            return record

    def delete(self, session_id: str) -> None:
        with self.db.tx() as s:
            s.execute(delete(UiSessionRow).where(UiSessionRow.id == session_id))

    def purge(self) -> int:
        """Delete every expired session; returns how many."""
        with self.db.tx() as s:
            result = s.execute(delete(UiSessionRow).where(UiSessionRow.expires_at <= utcnow()))
            return int(getattr(result, "rowcount", 0) or 0)


def _session(row: UiSessionRow, key: ApiKeyRow) -> SessionRecord:
    return SessionRecord(row.id, key_record(key), row.csrf, as_utc(row.created_at), as_utc(row.expires_at))
