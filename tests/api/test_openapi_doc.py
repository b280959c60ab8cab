"""/openapi.json documents what the server answers (400 not 422, the error shapes, key statuses, a bearer
scheme, the V2 inference schemas), and every timestamp the API writes is RFC 3339 with ``Z``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelport.api.management.schemas import AliasOut
from modelport.registry import AliasRecord
from tests.conftest import push

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
PUBLIC = {("get", "/v2"), ("get", "/v2/health/live"), ("get", "/v2/health/ready")}


@pytest.fixture
def spec(api: TestClient) -> dict[str, Any]:
    return api.get("/openapi.json").json()  # type: ignore[no-any-return]


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in spec["paths"].items() for method, op in item.items()]


def error_schema(path: str) -> str:
    by_surface = {"/v2": "V2Error", "/v1": "OpenAIError"}
    return "#/components/schemas/" + by_surface.get(path[:3], "ManagementError")


def test_no_422_and_every_error_has_the_surface_shape(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for method, path, op in operations(spec):
        assert "422" not in op["responses"], (method, path)
        for status, response in op["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": error_schema(path)}, (method, path, status)
    detail = spec["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]) == {"code", "message", "field"}
    assert spec["components"]["schemas"]["V2Error"]["properties"]["error"]["type"] == "string"


def test_key_operations_carry_the_bearer_scheme_and_its_statuses(spec: dict[str, Any]) -> None:
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearer"]["description"],
    }
    for method, path, op in operations(spec):
        if (method, path) in PUBLIC:
            assert "security" not in op and "401" not in op["responses"], path
        else:
            assert op["security"] == [{"bearer": []}], (method, path)
            assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
            assert "Retry-After" in op["responses"]["429"]["headers"]
        if "{model}" in path:
            assert "404" in op["responses"], (method, path)


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("post", "/api/v1/models", {"400", "409"}),
        ("post", "/api/v1/models/{model}/versions", {"400", "413", "507"}),
        ("delete", "/api/v1/models/{model}/versions/{version}", {"409"}),
        ("put", "/api/v1/models/{model}/aliases/{alias}", {"400", "409", "503"}),
        ("delete", "/api/v1/models/{model}/aliases/{alias}", {"400", "404"}),
        ("delete", "/api/v1/keys/{name}", {"404", "409"}),
        ("patch", "/api/v1/models/{model}/versions/{version}/config", {"400", "404"}),
        ("get", "/api/v1/audit", {"400"}),
        ("post", "/v2/models/{model}/infer", {"400", "404", "413", "503"}),
        ("get", "/v2/models/{model}/ready", {"404", "503"}),
    ],
)
def test_statuses_where_they_apply(spec: dict[str, Any], method: str, path: str, statuses: set[str]) -> None:
    assert statuses <= set(spec["paths"][path][method]["responses"])


def test_v2_infer_has_request_and_response_schemas(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for path in ("/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer"):
        op = spec["paths"][path]["post"]
        body = op["requestBody"]["content"]
        assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/InferenceRequest"}
        assert "application/octet-stream" in body
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/InferenceResponse"}
    request = schemas["InferenceRequest"]
    assert request["required"] == ["inputs"] and {"id", "parameters", "outputs"} <= set(request["properties"])
    tensor = schemas["InferenceInput"]
    assert {"name", "shape", "datatype", "data"} <= set(tensor["properties"])
    assert "FP32" in tensor["properties"]["datatype"]["enum"]
    assert set(schemas["InferenceResponse"]["required"]) == {"model_name", "model_version", "outputs"}


def test_what_the_document_says_is_what_the_server_answers(api: TestClient, spec: dict[str, Any]) -> None:
    """A call without a key, and one with a bad body, answer statuses their operation documents."""
    for method, path, op in operations(spec):
        if (method, path) in PUBLIC:
            continue
        url = path.replace("{model}", "iris").replace("{version}", "1").replace("{alias}", "prod")
        url = url.replace("{name}", "ci")
        r = api.request(method, url, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and str(r.status_code) in op["responses"], (method, path)
        assert r.headers["www-authenticate"] == "Bearer"
        if "application/json" in op.get("requestBody", {}).get("content", {}):
            bad = api.request(method, url, content=b"{not json")
            assert bad.status_code in (400, 404), (method, path, bad.text)
            assert str(bad.status_code) in op["responses"], (method, path)


def test_every_timestamp_is_rfc3339_with_z(api: TestClient, artifacts: dict[str, Path]) -> None:
    pushed = push(api, "iris", artifacts["iris.skops"]).json()
    alias = api.put("/api/v1/models/iris/aliases/production", json={"version": 1}).json()
    soon = (datetime.now(timezone(timedelta(hours=2))) + timedelta(days=1)).isoformat()  # +02:00 given
    key = api.post("/api/v1/keys", json={"name": "ci", "scopes": ["read"], "expires_at": soon}).json()
    stamps = [
        pushed["created_at"],
        api.get("/api/v1/models/iris/versions/1").json()["created_at"],
        api.get("/api/v1/models/iris").json()["created_at"],
        api.get("/api/v1/models").json()[0]["created_at"],
        alias["updated_at"],
        *(h["at"] for h in api.get("/api/v1/models/iris/aliases/production/history").json()),
        key["created_at"],
        key["expires_at"],
        api.delete("/api/v1/keys/ci").json()["revoked_at"],
        *(e["at"] for e in api.get("/api/v1/audit").json()),
        api.get("/api/v1/audit", params={"action": "key.create"}).json()[0]["details"]["expires_at"],
    ]
    assert all(isinstance(s, str) and RFC3339_Z.match(s) for s in stamps), stamps
    assert datetime.fromisoformat(key["expires_at"]) == datetime.fromisoformat(soon)  # same instant


def test_timestamps_from_a_database_in_another_zone_are_written_in_utc() -> None:
    berlin = datetime(2025, 1, 31, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    out = AliasOut.of(AliasRecord("iris", "production", 1, berlin, "t")).model_dump(mode="json")
    assert out["updated_at"] == "2025-01-31T12:00:00Z"
    assert datetime.fromisoformat(out["updated_at"]) == berlin.astimezone(UTC)
