"""Wire shapes of datasets and jobs on ``/api/v1``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from modelport.api.management.schemas import Timestamp
from modelport.datasets.service import ResolvedDataset, version_info
from modelport.registry.datasets import DatasetRecord, DatasetVersionRecord
from modelport.registry.jobs import JobEvent, JobRecord, JobState


class ColumnOut(BaseModel):
    name: str
    type: str = Field(description="integer, float, boolean or string")
    nulls: int
    distinct: int


class DatasetVersionOut(BaseModel):
    dataset: str
    version: int | None = Field(description="absent for a dataset bundled with scikit-learn")
    sha256: str | None
    size: int | None
    format: str = Field(description="csv, parquet, or sklearn (bundled)")
    rows: int
    columns: int
    schema_: list[ColumnOut] = Field(alias="schema")
    preview: list[dict[str, Any]] = Field(description="the first rows")
    created_at: Timestamp | None = None
    created_by: str | None = None

    model_config = {"populate_by_name": True}

    @classmethod
    def of(cls, v: DatasetVersionRecord) -> DatasetVersionOut:
        return cls._of(v.dataset, version_info(v), v.version, v.sha256, v.size, v.created_at, v.created_by)

    @classmethod
    def bundled(cls, d: ResolvedDataset) -> DatasetVersionOut:
        return cls._of(d.name, d.info)

    @classmethod
    def _of(
        cls,
        dataset: str,
        info: dict[str, Any],
        version: int | None = None,
        sha256: str | None = None,
        size: int | None = None,
        created_at: datetime | None = None,
        created_by: str | None = None,
    ) -> DatasetVersionOut:
        return cls(
            dataset=dataset,
            version=version,
            sha256=sha256,
            size=size,
            format=info["format"],
            rows=info["rows"],
            columns=info["columns"],
            schema_=[ColumnOut(**c) for c in info["schema"]],
            preview=info["preview"],
            created_at=created_at,
            created_by=created_by,
        )


class DatasetOut(BaseModel):
    name: str
    bundled: bool = False
    description: str | None = None
    created_at: Timestamp | None = None
    created_by: str | None = None
    versions: list[int] = Field(default_factory=list)
    latest: DatasetVersionOut | None = None

    @classmethod
    def of(cls, d: DatasetRecord) -> DatasetOut:
        return cls(
            name=d.name,
            created_at=d.created_at,
            created_by=d.created_by,
            versions=[v.version for v in d.versions],
            latest=DatasetVersionOut.of(d.versions[-1]) if d.versions else None,
        )


class DatasetSummaryOut(BaseModel):
    name: str
    bundled: bool = False
    description: str | None = None
    latest_version: int | None = None
    rows: int | None = None
    created_at: Timestamp | None = None


class JobOut(BaseModel):
    id: int
    kind: str
    state: JobState
    model: str
    dataset: str = Field(description="name:version, or sklearn:name")
    estimator: str
    task: str
    metric: str
    progress: float = Field(description="0 to 1")
    step: str = Field(description="what the job is doing now")
    metrics: dict[str, Any] | None = Field(None, description="metrics so far, while it runs")
    result: dict[str, Any] | None = Field(
        None, description="the version made, its metrics, final params and the promotion decision"
    )
    error: str | None = None
    version: int | None = Field(None, description="the model version the job produced")
    cancel_requested: bool
    spec: dict[str, Any] = Field(description="the request as given")
    created_at: Timestamp
    created_by: str
    started_at: Timestamp | None
    finished_at: Timestamp | None

    @classmethod
    def of(cls, j: JobRecord) -> JobOut:
        request = j.spec["request"]
        return cls(
            id=j.id,
            kind=j.kind,
            state=j.state,
            model=j.model,
            dataset=j.dataset if j.dataset_version is None else f"{j.dataset}:{j.dataset_version}",
            estimator=request["estimator"],
            task=j.spec["task"],
            metric=j.spec["metric"],
            progress=j.progress,
            step=j.step,
            metrics=j.metrics,
            result=j.result,
            error=j.error,
            version=j.version,
            cancel_requested=j.cancel_requested,
            spec=request,
            created_at=j.created_at,
            created_by=j.created_by,
            started_at=j.started_at,
            finished_at=j.finished_at,
        )


class JobEventOut(BaseModel):
    seq: int
    at: datetime
    kind: str = Field(description="state, progress, log or decision")
    data: dict[str, Any]

    @classmethod
    def of(cls, e: JobEvent) -> JobEventOut:
        return cls(seq=e.seq, at=e.at, kind=e.kind, data=e.data)


class EstimatorOut(BaseModel):
    name: str
    tasks: list[str]
    framework: str
    description: str
    params: dict[str, Any] = Field(description="JSON schema of the estimator's parameters")
