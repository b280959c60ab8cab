"""Property-based fuzzing of every documented operation (schemathesis on /openapi.json): no 5xx."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from modelport.server import build_app
from tests import fixtures
from tests.conftest import ADMIN_KEY, make_services

# schemathesis reads the schema when the module is collected, so the server is built here.
_ROOT = Path(tempfile.mkdtemp(prefix="modelport-fuzz-"))
_SERVICES = make_services(_ROOT / "data", allowed_hosts=["*"])
_SERVICES.repository.push_bytes(
    "iris", [fixtures.write_skops(fixtures.iris_forest(), _ROOT / "iris.skops").read_bytes()], by="fuzz"
)
_SERVICES.repository.promote("iris", "production", 1, by="fuzz")
schema = schemathesis.openapi.from_asgi("/openapi.json", build_app(_SERVICES))


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    _SERVICES.close()
    shutil.rmtree(_ROOT, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_server_errors(case: Any) -> None:
    response = case.call(headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code < 500, (
        case.method,
        case.formatted_path,
        response.status_code,
        response.text[:300],
    )
