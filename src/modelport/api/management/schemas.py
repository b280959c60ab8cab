"""The management API's request and response bodies, documented in ``/openapi.json``.

Responses are built from registry records with ``of``; their JSON is what the SDK and CLI read: timestamps
as ISO 8601 strings with their offset (pydantic's form: ``2025-01-31T12:00:00.123456Z`` in UTC), ``error``
only on versions that have one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from modelport.limits import BATCH_DELAY_LIMIT_MS, BATCH_SIZE_LIMIT, MAX_VERSION, QUEUE_LIMIT
from modelport.registry import (
    AliasRecord,
    AuditRecord,
    HistoryRecord,
    KeyRecord,
    ModelRecord,
    VersionRecord,
    VersionState,
)

MAX_RATE_LIMIT = 1_000_000.0  # requests per second


# ---- requests ------------------------------------------------------------------------------------------
class CreateModel(BaseModel):
    name: str
    description: str = Field("", max_length=2000)


class SetAlias(BaseModel):
    version: int = Field(ge=1, le=MAX_VERSION)


class BatchingConfig(BaseModel):
    max_batch_size: int | None = Field(None, ge=1, le=BATCH_SIZE_LIMIT)
    max_delay_ms: float | None = Field(None, ge=0, le=BATCH_DELAY_LIMIT_MS)
    max_queue: int | None = Field(None, ge=1, le=QUEUE_LIMIT)


class VersionConfig(BaseModel):
    """Serving settings of a version (not part of its immutable artifact)."""

    batching: BatchingConfig = BatchingConfig()

    def as_config(self) -> dict[str, Any]:
        batching = self.batching.model_dump(exclude_none=True)
        return {"batching": batching} if batching else {}


class CreateKey(BaseModel):
    name: str
    scopes: list[str] = Field(min_length=1)
    expires_at: datetime | None = None
    models: str | None = Field(None, description="glob of the model names the key may use, e.g. fraud-*")
    rate_limit: float | None = Field(None, gt=0, le=MAX_RATE_LIMIT, description="requests per second")


# ---- responses -----------------------------------------------------------------------------------------
class FileOut(BaseModel):
    path: str
    sha256: str
    size: int


class VersionOut(BaseModel):
    model: str
    version: int
    state: VersionState
    sha256: str
    size: int
    framework: str | None
    signature: dict[str, Any] | None
    files: list[FileOut]
    created_at: datetime
    created_by: str
    config: dict[str, Any]
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="facts attached after the push: lineage, training and optimisation"
    )
    error: str | None = Field(None, description="why the version failed its load check; absent otherwise")

    @classmethod
    def of(cls, v: VersionRecord) -> VersionOut:
        return cls(
            model=v.model,
            version=v.version,
            state=v.state,
            sha256=v.sha256,
            size=v.size,
            framework=v.framework,
            signature=v.signature,
            files=[FileOut(path=f.path, sha256=f.sha256, size=f.size) for f in v.manifest],
            created_at=v.created_at,
            created_by=v.created_by,
            config=v.config,
            metadata=v.metadata,
            error=v.error or None,
        )

    # No return annotation on purpose: pydantic would document the annotated type (a bare object) in
    # place of this model's fields.
    @model_serializer(mode="wrap")
    def _omit_missing_error(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        out: dict[str, Any] = handler(self)
        if out.get("error") is None:
            out.pop("error", None)
        return out


class AliasOut(BaseModel):
    alias: str
    version: int
    updated_at: datetime
    updated_by: str

    @classmethod
    def of(cls, a: AliasRecord) -> AliasOut:
        return cls(alias=a.name, version=a.version, updated_at=a.updated_at, updated_by=a.updated_by)


class HistoryOut(BaseModel):
    version: int
    action: str
    at: datetime
    by: str

    @classmethod
    def of(cls, h: HistoryRecord) -> HistoryOut:
        return cls(version=h.version, action=h.action, at=h.at, by=h.by)


class ModelOut(BaseModel):
    name: str
    description: str
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, m: ModelRecord) -> ModelOut:
        return cls(name=m.name, description=m.description, created_at=m.created_at, created_by=m.created_by)


class ModelSummaryOut(ModelOut):
    """A model in the listing."""

    aliases: dict[str, int] = Field(description="alias name -> version number")
    latest_version: int | None


class ModelDetailOut(ModelOut):
    versions: list[VersionOut]
    aliases: list[AliasOut]


class KeyOut(BaseModel):
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None
    models: str | None
    rate_limit: float | None

    @classmethod
    def of(cls, k: KeyRecord) -> KeyOut:
        return cls(
            name=k.name,
            prefix=k.prefix,
            scopes=sorted(k.scopes),
            created_at=k.created_at,
            revoked_at=k.revoked_at,
            expires_at=k.expires_at,
            models=k.models,
            rate_limit=k.rate_limit,
        )


class KeyCreatedOut(KeyOut):
    key: str = Field(description="the secret, shown this once")


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    result: str
    details: dict[str, Any]

    @classmethod
    def of(cls, a: AuditRecord) -> AuditOut:
        return cls(
            id=a.id,
            at=a.at,
            actor=a.actor,
            action=a.action,
            target=a.target,
            result=a.result,
            details=a.details,
        )
