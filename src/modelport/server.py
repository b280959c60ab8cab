"""The composition root: settings -> registry, store, runtimes, repository, data plane -> ASGI app."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import FastAPI

from modelport.api.app import create_app
from modelport.registry import Registry
from modelport.registry.db import make_engine, migrate
from modelport.repository import Limits, ModelRepository
from modelport.runtimes.catalog import RuntimeCatalog
from modelport.security.keys import KeyService
from modelport.serving.dataplane import DataPlane
from modelport.settings import Settings
from modelport.storage.local import LocalArtifactStore

log = logging.getLogger("modelport")


@dataclass
class Services:
    settings: Settings
    registry: Registry
    repository: ModelRepository
    dataplane: DataPlane
    keys: KeyService
    generated_admin_key: str | None

    def close(self) -> None:
        self.dataplane.close()
        self.registry.engine.dispose()


def build_services(settings: Settings) -> Services:
    settings.check()
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    registry = Registry(engine)
    store = LocalArtifactStore(data_dir / "artifacts")
    store.sweep_temp()
    repository = ModelRepository(
        registry,
        store,
        RuntimeCatalog.from_entry_points(),
        data_dir / "tmp",
        Limits(settings.max_upload_bytes, settings.archive_max_entries, settings.archive_max_bytes),
    )
    recovered = repository.recover()
    if any(recovered.values()):
        log.warning("recovered after an unclean stop: %s", recovered)
    keys = KeyService(registry)
    generated = keys.bootstrap_admin(data_dir, settings.admin_key) if settings.auth else None
    return Services(settings, registry, repository, DataPlane(registry, repository), keys, generated)


def build_app(services: Services) -> FastAPI:
    return create_app(services.settings, services.repository, services.dataplane, services.keys)
