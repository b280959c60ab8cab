"""Control-plane state: models, versions, aliases with history, API keys, audit events."""

from __future__ import annotations

from modelport.registry.records import (
    AliasRecord,
    AuditRecord,
    HistoryRecord,
    KeyRecord,
    ModelRecord,
    VersionRecord,
    VersionState,
)
from modelport.registry.store import Registry

__all__ = [
    "AliasRecord",
    "AuditRecord",
    "HistoryRecord",
    "KeyRecord",
    "ModelRecord",
    "Registry",
    "VersionRecord",
    "VersionState",
]
