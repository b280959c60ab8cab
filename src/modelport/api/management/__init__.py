"""Management API under ``/api/v1``: models, versions, aliases, keys, audit.

The ``/api/v1`` surface: a sub-app with the management error shape (``{"error": {"code", "message",
"field"?}}``) whose routes depend on ``GuardedAuth`` (Host/Origin allow-list, refusals audited).
"""

from __future__ import annotations

from fastapi import FastAPI

from modelport.api.auth import GuardedAuth
from modelport.api.management import aliases, keys, models, versions
from modelport.api.management.context import Context
from modelport.api.surfaces import MANAGEMENT
from modelport.repository import ModelRepository
from modelport.security.keys import KeyService
from modelport.serving.dataplane import DataPlane


def build_app(
    repository: ModelRepository,
    dataplane: DataPlane,
    key_service: KeyService,
    auth: GuardedAuth,
    max_upload: int,
) -> FastAPI:
    ctx = Context(repository, dataplane, key_service, auth, max_upload)
    app = MANAGEMENT.app()
    for module in (models, versions, aliases, keys):
        app.include_router(module.build_router(ctx))
    return app
