"""The change feed: how every serving process (and later every host) learns what changed.

Each change that serving must follow adds a row to ``changes`` in the same transaction as the change,
numbered by incrementing the ``changes`` counter row. The counter's row lock makes numbers commit in
order, so a reader that has seen number N has seen every change up to N. Reconcile loops poll ``head``
(one row) and read what came after the number they last saw.
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from modelport.registry.db import Database, as_utc, utcnow
from modelport.registry.records import ChangeKind, ChangeRecord
from modelport.registry.tables import ChangeRow, CounterRow

KEEP = 10_000  # entries kept; a reader further behind than that reloads everything


def announce(s: Session, kind: ChangeKind, model: str | None = None, version: int | None = None) -> int:
    """Record a change inside the caller's transaction; returns its number."""
    s.execute(update(CounterRow).where(CounterRow.name == "changes").values(value=CounterRow.value + 1))
    seq = int(s.scalar(select(CounterRow.value).where(CounterRow.name == "changes")) or 0)
    s.add(ChangeRow(seq=seq, at=utcnow(), kind=kind.value, model=model, version=version))
    if seq % 1000 == 0:
        s.execute(delete(ChangeRow).where(ChangeRow.seq <= seq - KEEP))
    return seq


class ChangeFeed:
    def __init__(self, db: Database) -> None:
        self.db = db

    def head(self) -> int:
        """The number of the newest change (0 when there is none)."""
        with self.db.tx() as s:
            return int(s.scalar(select(CounterRow.value).where(CounterRow.name == "changes")) or 0)

    def since(self, seq: int, limit: int = 1000) -> list[ChangeRecord] | None:
        """Changes after ``seq``, oldest first; ``None`` when the reader cannot follow (some were pruned,
        or the registry is behind it after a restore): reload everything."""
        with self.db.tx() as s:
            head = int(s.scalar(select(CounterRow.value).where(CounterRow.name == "changes")) or 0)
            rows = s.scalars(
                select(ChangeRow).where(ChangeRow.seq > seq).order_by(ChangeRow.seq).limit(limit)
            ).all()
        if (rows and rows[0].seq != seq + 1) or seq > head:  # pruned past us, or a database reset
            return None
        return [ChangeRecord(r.seq, as_utc(r.at), ChangeKind(r.kind), r.model, r.version) for r in rows]
