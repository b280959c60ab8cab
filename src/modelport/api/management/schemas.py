"""The management API's request and response bodies, documented in ``/openapi.json``.

Requests refuse unknown fields (a typo is a 400 naming it, never a silently ignored key). Responses
are built from registry records with ``of``; their JSON is what the SDK and CLI read: timestamps in
RFC 3339, in UTC with ``Z`` (``2025-01-31T12:00:00.123456Z``) whatever the database hands back,
``error`` only on versions that have one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from modelport.limits import (
    BATCH_DELAY_LIMIT_MS,
    BATCH_SIZE_LIMIT,
    BATCH_TOKENS_LIMIT,
    MAX_VERSION,
    QUEUE_LIMIT,
)
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
# every timestamp the API writes: in UTC, so that it is written with "Z"
Timestamp = Annotated[datetime, AfterValidator(lambda moment: moment.astimezone(UTC))]


class Strict(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


# ---- requests ------------------------------------------------------------------------------------------
class CreateModel(Strict):
    name: str
    description: str = Field("", max_length=2000)


class SetAlias(Strict):
    """Exactly one of ``version`` (a number) or ``alias`` (another alias of the same model: promote
    the version it points at)."""

    version: int | None = Field(None, ge=1, le=MAX_VERSION)
    alias: str | None = Field(None, description="another alias of the model, e.g. staging")


class BatchingConfig(Strict):
    max_batch_size: int | None = Field(None, ge=1, le=BATCH_SIZE_LIMIT)
    max_delay_ms: float | None = Field(None, ge=0, le=BATCH_DELAY_LIMIT_MS)
    max_queue: int | None = Field(None, ge=1, le=QUEUE_LIMIT)
    max_batch_tokens: int | None = Field(
        None, ge=1, le=BATCH_TOKENS_LIMIT, description="tokens in a batch, for text models"
    )


DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:\d{1,2})$"
Device = Annotated[
    str, Field(pattern=DEVICE_PATTERN, description="auto (a GPU when there is one), cpu, cuda, cuda:N")
]
Dtype = Literal["float32", "float16", "bfloat16"]
RUNTIME_SETTINGS = "settings only the version's runtime reads, e.g. pooling, normalize, max_new_tokens"


class VersionConfig(Strict):
    """Serving settings of a version (not part of its immutable artifact). A setting left out (or
    null) uses the server's default. A new device, dtype or runtime setting reloads the version."""

    batching: BatchingConfig = BatchingConfig()
    device: Device | None = None
    dtype: Dtype | None = None
    runtime: dict[str, Any] | None = Field(None, description=RUNTIME_SETTINGS)

    def as_config(self) -> dict[str, Any]:
        config = self.model_dump(exclude_none=True)
        if not config.get("batching"):
            config.pop("batching", None)
        return config


class VersionConfigPatch(Strict):
    """A change to a version's serving settings (JSON merge patch, RFC 7386): only the settings given
    change; null removes one (back to the server's default); ``"batching": null`` removes them all."""

    batching: BatchingConfig | None = None
    device: Device | None = None
    dtype: Dtype | None = None
    runtime: dict[str, Any] | None = Field(None, description=RUNTIME_SETTINGS)

    def applied_to(self, config: dict[str, Any]) -> dict[str, Any]:
        return merge_patch(config, self.model_dump(exclude_unset=True))


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 on objects: keys of ``patch`` replace (objects merge), null removes; empty objects go."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            current = out.get(key)
            out[key] = merge_patch(current if isinstance(current, dict) else {}, value)
            if not out[key]:
                del out[key]
        else:
            out[key] = value
    return out


class CreateKey(Strict):
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
    created_at: Timestamp
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


class PushedVersionOut(VersionOut):
    """The answer to a push: the new version, and which versions already had the same bytes."""

    same_sha256_as: list[int] = Field(
        description="other versions of this model whose artifact has the same sha256 (the push is kept)"
    )


class AliasOut(BaseModel):
    alias: str
    version: int
    updated_at: Timestamp
    updated_by: str

    @classmethod
    def of(cls, a: AliasRecord) -> AliasOut:
        return cls(alias=a.name, version=a.version, updated_at=a.updated_at, updated_by=a.updated_by)


class HistoryOut(BaseModel):
    version: int
    action: str
    at: Timestamp
    by: str

    @classmethod
    def of(cls, h: HistoryRecord) -> HistoryOut:
        return cls.model_validate(h, from_attributes=True)


class ModelOut(BaseModel):
    name: str
    description: str
    created_at: Timestamp
    created_by: str

    @classmethod
    def of(cls, m: ModelRecord) -> ModelOut:
        return cls.model_validate(m, from_attributes=True)


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
    created_at: Timestamp
    revoked_at: Timestamp | None
    expires_at: Timestamp | None
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
    at: Timestamp
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
