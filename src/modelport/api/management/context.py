"""What every management route needs: the services, the surface's auth, and the checked model name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from modelport.api.auth import GuardedAuth
from modelport.datasets.service import DatasetService
from modelport.jobs.runner import JobRunner
from modelport.names import check_name
from modelport.registry import Registry
from modelport.repository import ModelRepository
from modelport.security.keys import KeyService
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

    @property
    def registry(self) -> Registry:
        return self.repository.registry


def model_name(request: Request, model: str) -> str:
    """The route's model, checked: a valid name the caller's key may see (declare the key first)."""
    check_name(model, field="model")
    request.state.principal.require_model(model)
    return model


Model = Annotated[str, Depends(model_name)]
