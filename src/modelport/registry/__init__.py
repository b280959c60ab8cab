"""Control-plane state, one repository per record kind, over one database.

``registry.models`` (models and versions), ``registry.aliases``, ``registry.keys``, ``registry.audit``,
``registry.changes`` (the change feed serving follows), ``registry.blobs`` (blob references and the
publish/collect exclusion), ``registry.datasets`` and ``registry.jobs`` (the training queue),
``registry.monitoring`` (monitoring settings, reference profiles, serving statistics, feedback) and
``registry.alerts`` (alert rules, the webhook outbox). Rollouts get a repository of their own the same way.
"""

from __future__ import annotations

from sqlalchemy import Engine

from modelport.registry.alerts import Alerts
from modelport.registry.aliases import Aliases
from modelport.registry.audit import AuditLog
from modelport.registry.blobs import BlobReferences
from modelport.registry.changes import ChangeFeed
from modelport.registry.datasets import Datasets
from modelport.registry.db import Database
from modelport.registry.jobs import Jobs
from modelport.registry.keys import Keys
from modelport.registry.models import ModelVersions
from modelport.registry.monitoring import Monitoring
from modelport.registry.records import (
    AliasRecord,
    AuditRecord,
    ChangeKind,
    ChangeRecord,
    HistoryRecord,
    KeyRecord,
    ModelRecord,
    VersionRecord,
    VersionState,
)
from modelport.registry.sessions import Sessions


class Registry:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.db = Database(engine)
        self.models = ModelVersions(self.db)
        self.aliases = Aliases(self.db)
        self.keys = Keys(self.db)
        self.audit = AuditLog(self.db)
        self.changes = ChangeFeed(self.db)
        self.blobs = BlobReferences(self.db)
        self.datasets = Datasets(self.db)
        self.jobs = Jobs(self.db)
        self.monitoring = Monitoring(self.db)
        self.alerts = Alerts(self.db)
        self.sessions = Sessions(self.db)


__all__ = [
    "AliasRecord",
    "AuditRecord",
    "ChangeKind",
    "ChangeRecord",
    "HistoryRecord",
    "KeyRecord",
    "ModelRecord",
    "Registry",
    "VersionRecord",
    "VersionState",
]
