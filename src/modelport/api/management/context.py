"""What every management route needs: the services, the surface's auth, and the checked model name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from modelport.api.auth import GuardedAuth
from modelport.datasets.bundled import is_bundled
from modelport.datasets.service import DatasetService
from modelport.errors import NotFound
from modelport.jobs.runner import JobRunner
from modelport.monitoring.service import MonitoringService
from modelport.names import check_name
from modelport.registry import Registry
from modelport.repository import ModelRepository
from modelport.security.keys import KeyService, Principal
from modelport.serving.dataplane import DataPlane


@dataclass(frozen=True)
class Context:
    repository: ModelRepository
    dataplane: DataPlane
    keys: KeyService
    auth: GuardedAuth
    max_upload: int
    datasets: DatasetService
    jobs: JobRunner
    monitoring: MonitoringService

    @property
    def registry(self) -> Registry:
        return self.repository.registry


def model_name(request: Request, model: str) -> str:
    """The route's model, checked: a valid name the caller's key may see (declare the key first)."""
    check_name(model, field="model")
    request.state.principal.require_model(model)
    return model


Model = Annotated[str, Depends(model_name)]


def require_dataset(who: Principal, ref: str) -> None:
    """A key limited to some models (``fraud-*``) reaches only datasets whose names match the same glob
    (and the bundled ones): 404 for others, as if they did not exist. ``ref``: a name, ``name:3``."""
    if not is_bundled(ref) and not who.can_access(ref.partition(":")[0]):
        raise NotFound(f"dataset {ref!r} not found")
