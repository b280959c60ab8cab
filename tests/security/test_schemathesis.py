"""Property-based fuzzing of every documented operation (schemathesis on /openapi.json): no 5xx.

Path parameters named ``version`` are also drawn from integers far beyond 64 bits (a hook on the
generated path parameters): those must answer 404 or 400, and a test below shows that the generation
reaches them for every such operation."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, find, settings
from hypothesis import strategies as st

from modelport.server import build_app
from tests import fixtures
from tests.conftest import ADMIN_KEY, make_services
from tests.huge import BEYOND_64_BITS, is_huge

# schemathesis reads the schema when the module is collected, so the server is built here.
_ROOT = Path(tempfile.mkdtemp(prefix="modelport-fuzz-"))
_SERVICES = make_services(_ROOT / "data", allowed_hosts=["*"])
_SERVICES.repository.push_bytes(
    "iris", [fixtures.write_skops(fixtures.iris_forest(), _ROOT / "iris.skops").read_bytes()], by="fuzz"
)
_SERVICES.repository.promote("iris", "production", 1, by="fuzz")
schema = schemathesis.openapi.from_asgi("/openapi.json", build_app(_SERVICES))
huge_versions = st.one_of(
    st.integers(min_value=BEYOND_64_BITS, max_value=10**40),
    st.integers(min_value=-(10**40), max_value=-BEYOND_64_BITS),
    st.from_regex(r"[1-9][0-9]{20,300}", fullmatch=True),  # long digit strings
)
VERSIONED = [
    operation
    for item in schema.get_all_operations()
    if (operation := item.ok()).path_parameters.get("version") is not None
]


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Every ``version`` path parameter is, as often as not, an integer far beyond 64 bits."""
    if "version" not in (path_parameters or {}):
        return st.just(path_parameters)
    return st.one_of(st.just(path_parameters), huge_versions.map(lambda v: {**path_parameters, "version": v}))


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    _SERVICES.close()
    shutil.rmtree(_ROOT, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_server_errors(case: Any) -> None:
    if case.method == "DELETE" and (case.path_parameters or {}).get("name") == "admin":
        return  # revoking the key the fuzzer calls with would answer 401 to every later case
    response = case.call(headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code < 500, (
        case.method,
        case.formatted_path,
        response.status_code,
        response.text[:300],
    )
    if "Authorization" not in response.request.headers:
        # the document says which operations need a key, and schemathesis also calls them without one:
        # refused (401), unless the request goes nowhere (404) or is malformed before auth runs (400)
        assert response.status_code in (400, 401, 404), (
            case.method,
            case.formatted_path,
            response.status_code,
        )
    elif is_huge((case.path_parameters or {}).get("version")):
        assert response.status_code in (400, 404), (case.method, case.formatted_path, response.status_code)


@pytest.mark.parametrize("operation", VERSIONED, ids=[op.label for op in VERSIONED])
def test_generated_cases_reach_huge_versions(operation: Any) -> None:
    assert len(VERSIONED) >= 6  # V2 metadata, ready, infer; management get, config, delete
    case = find(
        operation.as_strategy(),
        lambda case: is_huge(case.path_parameters["version"]),
        settings=settings(max_examples=200, database=None, suppress_health_check=list(HealthCheck)),
    )
    assert is_huge(case.path_parameters["version"])
