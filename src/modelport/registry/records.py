"""Plain immutable records the registry hands out (no ORM objects leak out of it)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

# Where the current request comes from (the client's address), set by the HTTP layer for each request so
# that audit events name it without the domain code knowing about HTTP.
REQUEST_SOURCE: ContextVar[str | None] = ContextVar("modelport_request_source", default=None)


class VersionState(StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class ModelRecord:
    name: str
    description: str
    created_at: datetime
    created_by: str
    unloaded: bool = False


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class VersionRecord:
    model: str
    version: int
    state: VersionState
    sha256: str
    size: int
    framework: str | None
    signature: dict[str, Any] | None
    manifest: tuple[FileEntry, ...]
    error: str | None
    created_at: datetime
    created_by: str
    config: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AliasRecord:
    model: str
    name: str
    version: int
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True)
class HistoryRecord:
    version: int
    action: str
    at: datetime
    by: str


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None = None
    models: str | None = None
    rate_limit: float | None = None


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    result: str
    details: dict[str, Any] = field(default_factory=dict)


class ChangeKind(StrEnum):
    """What a change-feed entry announces; serving processes react to each kind."""

    MODEL_CREATED = "model.created"
    MODEL_DELETED = "model.deleted"
    MODEL_LOADED = "model.loaded"
    MODEL_UNLOADED = "model.unloaded"
    VERSION_ADDED = "version.added"
    VERSION_STATE = "version.state"
    VERSION_CONFIG = "version.config"
    VERSION_DELETED = "version.deleted"
    ALIAS_MOVED = "alias.moved"
    KEY_CHANGED = "key.changed"


@dataclass(frozen=True)
class ChangeRecord:
    seq: int
    at: datetime
    kind: ChangeKind
    model: str | None = None
    version: int | None = None
