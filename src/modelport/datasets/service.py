"""Datasets as the control plane sees them: upload (inspected before anything is stored), resolve a
reference (``name``, ``name:3``, ``sklearn:iris``), fetch, delete (refused while a job or a model
version's lineage uses it). Files live in the artifact store by sha256, like model files."""

from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.datasets.bundled import BUNDLED, PREFIX, bundled_info, is_bundled
from modelport.datasets.reading import inspect
from modelport.errors import ConfigError, Conflict, InvalidInput, ModelportError
from modelport.names import check_name
from modelport.registry import Registry
from modelport.registry.datasets import DatasetVersionRecord
from modelport.repository import Upload, storage_errors
from modelport.storage.base import ArtifactStore

if TYPE_CHECKING:
    import pyarrow


@dataclass(frozen=True)
class ResolvedDataset:
    """One concrete dataset a job reads: a stored version, or a bundled one (no version, no file)."""

    name: str
    version: int | None
    sha256: str | None
    format: str
    info: dict[str, Any]  # {"format", "rows", "columns", "schema": [...], "preview": [...]}

    @property
    def ref(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"

    def lineage(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "rows": self.info["rows"]}

    def column(self, name: str) -> dict[str, Any] | None:
        return next((c for c in self.info["schema"] if c["name"] == name), None)


def version_info(record: DatasetVersionRecord) -> dict[str, Any]:
    return {"format": record.format, "rows": record.rows, **record.info}


TRAINING_MODULES = ("pyarrow", "sklearn")


def require_training() -> None:
    """Datasets and training need the ``training`` extra; without it, say so instead of failing inside."""
    missing = [m for m in TRAINING_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"datasets and training need {', '.join(missing)}: pip install 'modelport[training]'"
        )


class DatasetService:
    def __init__(self, registry: Registry, store: ArtifactStore, scratch: Path, max_bytes: int) -> None:
        self.registry = registry
        self.store = store
        self.scratch = scratch
        self.max_bytes = max_bytes
        scratch.mkdir(parents=True, exist_ok=True)

    def begin_upload(self) -> Upload:
        return Upload(self.scratch, self.max_bytes, what="dataset")

    def push(self, name: str, upload: Upload, *, by: str) -> DatasetVersionRecord:
        """Inspect the uploaded file (a 400 naming the row or column when it is bad: nothing stored),
        then store it and commit its version row."""
        require_training()
        pin: str | None = None
        created = False
        try:
            with storage_errors():
                check_name(name, field="dataset")
                digest = upload.finish()
                info = inspect(upload.path)
                pin = self.registry.blobs.pin([digest])
                created = not self.store.exists(digest)
                self.store.put(upload.path, digest)
                described = info.as_dict()
                record = self.registry.datasets.add_version(
                    name,
                    sha256=digest,
                    size=upload.size,
                    format=info.format,
                    rows=info.rows,
                    info={k: described[k] for k in ("columns", "schema", "preview")},
                    by=by,
                )
        except BaseException as exc:
            if pin is not None:  # first: the pin would keep the blob from being collected
                self.registry.blobs.unpin(pin)
                pin = None
            if created:
                self.registry.blobs.collect([digest], self.store.delete)
            if isinstance(exc, ModelportError):
                self.registry.audit.record(
                    actor=by,
                    action="dataset.push",
                    target=name,
                    result="refused",
                    details={"error": exc.code},
                )
            raise
        finally:
            if pin is not None:
                self.registry.blobs.unpin(pin)
            upload.discard()
        self.registry.audit.record(
            actor=by,
            action="dataset.push",
            target=f"{name}:{record.version}",
            details={"sha256": digest, "rows": record.rows, "format": record.format},
        )
        return record

    def resolve(self, ref: str, *, field: str = "dataset") -> ResolvedDataset:
        if is_bundled(ref):
            require_training()
            name = ref.removeprefix(PREFIX)
            info = bundled_info(name)
            return ResolvedDataset(ref, None, None, "sklearn", info.as_dict())
        name, _, number = ref.partition(":")
        check_name(name, field=field)
        if number and not (number.isascii() and number.isdigit() and len(number) <= 9):
            raise InvalidInput(f"{field}: a dataset is 'name' or 'name:version', got {ref!r}", field=field)
        record = self.registry.datasets.get_version(name, int(number) if number else None)
        return ResolvedDataset(name, record.version, record.sha256, record.format, version_info(record))

    def materialise(self, dataset: ResolvedDataset, directory: Path) -> dict[str, Any]:
        """Where a job finds the dataset: a file fetched (sha256 verified) into ``directory``, or the name
        of a bundled one."""
        if dataset.sha256 is None:
            return {"bundled": dataset.name.removeprefix(PREFIX)}
        path = directory / f"data.{dataset.format}"
        self.store.fetch(dataset.sha256, path)
        return {"path": str(path), "format": dataset.format}

    def table(self, dataset: ResolvedDataset) -> pyarrow.Table:
        """The dataset's rows, read here (a reference profile for monitoring)."""
        if dataset.sha256 is None:
            from modelport.datasets.bundled import bundled_table

            return bundled_table(dataset.name.removeprefix(PREFIX))
        from modelport.datasets.reading import read_table

        with tempfile.TemporaryDirectory(dir=self.scratch) as directory:
            where = self.materialise(dataset, Path(directory))
            return read_table(Path(where["path"]), dataset.format)

    def delete(self, name: str, version: int | None, *, by: str) -> None:
        if is_bundled(name):
            raise Conflict(f"{name} is bundled with scikit-learn and cannot be deleted")
        check_name(name, field="dataset")
        jobs = self.registry.jobs.using_dataset(name, version)
        what = f"dataset {name!r}" + ("" if version is None else f" version {version}")
        if jobs:
            listed = ", ".join(str(j) for j in jobs[:10])
            raise Conflict(f"{what} is used by jobs {listed} (running, waiting, or the lineage of a version)")
        if version is None:
            removed = self.registry.datasets.delete(name)
        else:
            removed = [self.registry.datasets.delete_version(name, version)]
        self.registry.blobs.collect({r.sha256 for r in removed}, self.store.delete)
        self.registry.audit.record(
            actor=by, action="dataset.delete", target=name, details={"versions": [r.version for r in removed]}
        )

    @staticmethod
    def bundled() -> dict[str, str]:
        """Name -> description; none when scikit-learn is not installed."""
        if any(importlib.util.find_spec(m) is None for m in TRAINING_MODULES):
            return {}
        return {f"{PREFIX}{name}": description for name, description in BUNDLED.items()}
