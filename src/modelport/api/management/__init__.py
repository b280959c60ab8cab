"""Management API under ``/api/v1``: models, versions, aliases, keys, audit, datasets, jobs, monitoring.

The ``/api/v1`` surface: a sub-app with the management error shape (``{"error": {"code", "message",
"field"?}}``) whose routes depend on ``GuardedAuth`` (Host/Origin allow-list, refusals audited).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from modelport.api.auth import GuardedAuth
from modelport.api.management import aliases, datasets, jobs, keys, models, monitoring, versions
from modelport.api.management.context import Context
from modelport.api.surfaces import MANAGEMENT
from modelport.jobs.spec import JobSpec

if TYPE_CHECKING:
    from modelport.server import Services


def build_app(services: Services, auth: GuardedAuth) -> FastAPI:
    ctx = Context(
        services.repository,
        services.dataplane,
        services.keys,
        auth,
        services.settings.max_upload_bytes,
        services.datasets,
        services.jobs,
        services.monitoring,
    )
    app = MANAGEMENT.app()
    for module in (models, versions, aliases, keys, datasets, jobs, monitoring):
        app.include_router(module.build_router(ctx))
    app.doc_models.append(JobSpec)  # POST /jobs reads its body itself (to answer 422, not 400)
    return app
