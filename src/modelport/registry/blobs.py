"""Which blobs (dataset) versions reference, and the exclusion between publishing blobs and collecting them.

A push pins the digests it is about to write (``pin``) before it checks or writes the store, and drops
the pin once its version row (with its ``version_files``) is committed. Collection (``collect``) deletes
a blob only if no version references it and no live pin holds it, and does so while holding the
``blobs`` counter row, the same row ``pin`` takes: a pin and a collection of the same digest are never
interleaved, in one process, across ``--workers``, or across hosts sharing a PostgreSQL registry.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from modelport.registry.db import Database, utcnow
from modelport.registry.tables import BlobPinRow, CounterRow, DatasetVersionRow, VersionFileRow

PIN_TTL = timedelta(hours=6)  # longer than any push takes to write its blobs; a crashed push's pin expires


def _lock(s: Session) -> None:
    s.execute(update(CounterRow).where(CounterRow.name == "blobs").values(value=CounterRow.value + 1))


class BlobReferences:
    def __init__(self, db: Database) -> None:
        self.db = db

    def pin(self, digests: Iterable[str]) -> str:
        """Protect ``digests`` from collection until ``unpin``; returns the pin's owner token."""
        owner = secrets.token_hex(16)
        expires = utcnow() + PIN_TTL
        with self.db.tx() as s:
            _lock(s)
            s.add_all(BlobPinRow(owner=owner, sha256=sha, expires_at=expires) for sha in set(digests))
        return owner

    def clear_pins(self) -> None:
        """Drop every pin: only for start-up when no other process can be pushing (one host, before its
        workers start), so that blobs of a push that crashed are collected at once."""
        with self.db.tx() as s:
            _lock(s)
            s.execute(delete(BlobPinRow))

    def unpin(self, owner: str) -> None:
        with self.db.tx() as s:
            s.execute(delete(BlobPinRow).where(BlobPinRow.owner == owner))

    def referenced(self, digests: Iterable[str]) -> set[str]:
        """Those of ``digests`` that some version (ready, pending or failed) or dataset version references."""
        wanted = set(digests)
        with self.db.tx() as s:
            return _referenced(s, wanted)

    def collect(self, candidates: Iterable[str], delete_blob: Callable[[str], None]) -> list[str]:
        """Delete (through ``delete_blob``) the candidates nothing references or pins; returns them."""
        wanted = set(candidates)
        if not wanted:
            return []
        with self.db.tx() as s:
            _lock(s)
            s.execute(delete(BlobPinRow).where(BlobPinRow.expires_at < utcnow()))
            pinned = set(s.scalars(select(BlobPinRow.sha256).where(BlobPinRow.sha256.in_(wanted))))
            orphans = sorted(wanted - _referenced(s, wanted) - pinned)
            for sha in orphans:  # inside the lock: a push cannot pin one of these half-way through
                delete_blob(sha)
            return orphans


def _referenced(s: Session, wanted: set[str]) -> set[str]:
    found: set[str] = set()
    ordered = sorted(wanted)
    for start in range(0, len(ordered), 500):  # keep IN lists within every database's limits
        page = ordered[start : start + 500]
        found.update(s.scalars(select(VersionFileRow.sha256).where(VersionFileRow.sha256.in_(page))))
        found.update(s.scalars(select(DatasetVersionRow.sha256).where(DatasetVersionRow.sha256.in_(page))))
    return found
