"""Datasets and their immutable versions (the files live in the artifact store, by sha256)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from modelport.errors import NotFound
from modelport.registry.db import Database, as_utc, utcnow
from modelport.registry.tables import DatasetRow, DatasetVersionRow


@dataclass(frozen=True)
class DatasetVersionRecord:
    dataset: str
    version: int
    sha256: str
    size: int
    format: str
    rows: int
    info: dict[str, Any]  # {"columns", "schema", "preview"}
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    created_at: datetime
    created_by: str
    versions: tuple[DatasetVersionRecord, ...]


class Datasets:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add_version(
        self, name: str, *, sha256: str, size: int, format: str, rows: int, info: dict[str, Any], by: str
    ) -> DatasetVersionRecord:
        for attempt in range(2):  # two first uploads of one name at once: the loser retries as version 2
            try:
                with self.db.tx() as s:
                    dataset = s.scalar(select(DatasetRow).where(DatasetRow.name == name).with_for_update())
                    if dataset is None:
                        dataset = DatasetRow(name=name, created_at=utcnow(), created_by=by, last_version=0)
                        s.add(dataset)
                        s.flush()
                    dataset.last_version += 1
                    row = DatasetVersionRow(
                        dataset_id=dataset.id,
                        number=dataset.last_version,
                        sha256=sha256,
                        size=size,
                        format=format,
                        rows=rows,
                        info=info,
                        created_at=utcnow(),
                        created_by=by,
                    )
                    s.add(row)
                    s.flush()
                    return _version(name, row)
            except sa_exc.IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def all(self) -> list[DatasetRecord]:
        with self.db.tx() as s:
            return [_dataset(s, row) for row in s.scalars(select(DatasetRow).order_by(DatasetRow.name))]

    def get(self, name: str) -> DatasetRecord:
        with self.db.tx() as s:
            return _dataset(s, _row(s, name))

    def get_version(self, name: str, version: int | None = None) -> DatasetVersionRecord:
        """``version`` None: the newest."""
        with self.db.tx() as s:
            dataset = _row(s, name)
            query = select(DatasetVersionRow).where(DatasetVersionRow.dataset_id == dataset.id)
            if version is None:
                row = s.scalar(query.order_by(DatasetVersionRow.number.desc()).limit(1))
            else:
                row = s.scalar(query.where(DatasetVersionRow.number == version))
            if row is None:
                which = "has no versions" if version is None else f"has no version {version}"
                raise NotFound(f"dataset {name!r} {which}")
            return _version(name, row)

    def delete_version(self, name: str, version: int) -> DatasetVersionRecord:
        with self.db.tx() as s:
            dataset = _row(s, name)
            row = s.scalar(
                select(DatasetVersionRow).where(
                    DatasetVersionRow.dataset_id == dataset.id, DatasetVersionRow.number == version
                )
            )
            if row is None:
                raise NotFound(f"dataset {name!r} has no version {version}")
            record = _version(name, row)
            s.delete(row)
            return record

    def delete(self, name: str) -> list[DatasetVersionRecord]:
        with self.db.tx() as s:
            dataset = _row(s, name)
            records = list(_dataset(s, dataset).versions)
            s.execute(delete(DatasetVersionRow).where(DatasetVersionRow.dataset_id == dataset.id))
            s.delete(dataset)
            return records


def _row(s: Session, name: str) -> DatasetRow:
    row = s.scalar(select(DatasetRow).where(DatasetRow.name == name))
    if row is None:
        raise NotFound(f"dataset {name!r} not found")
    return row


def _dataset(s: Session, row: DatasetRow) -> DatasetRecord:
    versions = s.scalars(
        select(DatasetVersionRow)
        .where(DatasetVersionRow.dataset_id == row.id)
        .order_by(DatasetVersionRow.number)
    )
    return DatasetRecord(
        row.name, as_utc(row.created_at), row.created_by, tuple(_version(row.name, v) for v in versions)
    )


def _version(name: str, row: DatasetVersionRow) -> DatasetVersionRecord:
    return DatasetVersionRecord(
        name,
        row.number,
        row.sha256,
        row.size,
        row.format,
        row.rows,
        dict(row.info),
        as_utc(row.created_at),
        row.created_by,
    )
