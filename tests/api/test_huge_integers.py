"""Integers far beyond 64 bits, in any path parameter, query parameter or body field of any documented
operation, answer 400, 404 (422 in a job request), never 5xx; version numbers no registry can hold answer
404 or 400.

The operations come from the app's own /openapi.json, so a route added later is fuzzed too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelport.server import build_app
from tests.conftest import AUTH, make_services, push
from tests.huge import BEYOND_64_BITS, is_huge

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}
VALID_PATH = {
    "model": "iris",
    "alias": "production",
    "version": "1",
    "dataset": "sklearn:iris",
    "job_id": "1",
}
# A valid body for each JSON request schema: the fuzz changes one number in it at a time.
VALID_BODY: dict[str, dict[str, Any]] = {
    "SetAlias": {"version": 1},
    "VersionConfig": {"batching": {"max_batch_size": 8, "max_delay_ms": 1.0, "max_queue": 16}},
    "VersionConfigPatch": {"batching": {"max_batch_size": 8, "max_delay_ms": 1.0, "max_queue": 16}},
    "InferenceRequest": ROW,
    "CreateKey": {"name": "fuzz-key", "scopes": ["read"], "rate_limit": 5.0},
    "CreateModel": {"name": "fuzz-model"},
    "EmbeddingRequest": {"model": "iris", "input": "x"},
    "ChatRequest": {"model": "iris", "messages": [{"role": "user", "content": "x"}]},
    "CompletionRequest": {"model": "iris", "prompt": "x"},
    "MonitoringConfigIn": {"sample_rate": 0.5, "reference_rows": 10},
    "ReferenceIn": {"dataset": "sklearn:iris", "target": "target"},
    "AlertIn": {"kind": "p99", "threshold": 0.5, "window": "5m"},
    "JobSpec": {
        "model": "fuzz",
        "dataset": "sklearn:iris",
        "target": "target",
        "estimator": "random_forest",
        "params": {"n_estimators": 1},
        "validation": {"holdout": 0.2, "folds": 2, "seed": 0},
        "search": {"kind": "grid", "space": {"max_depth": [1]}, "trials": 1},
        "promote": {"alias": "prod", "min_improvement": 0},
        "limits": {"memory_mb": 100, "cpu_seconds": 9},
    },
}
# the statuses a refused body gets: a job request that cannot be carried out is a 422, as documented (and
# a 400 when the number is beyond what its JSON parser reads)
BODY_STATUS = {"JobSpec": (400, 422)}
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)

# Huge integers as decimal text (JSON and URLs carry them as text; Python refuses str() of ints over
# 4300 digits, the server must not care).
huge_integers = st.one_of(
    st.sampled_from([2**64, 2**64 + 1, -(2**64), 10**20 - 1, 10**4000]).map(str),
    st.integers(min_value=BEYOND_64_BITS, max_value=10**80).map(str),
    st.integers(min_value=-(10**80), max_value=-BEYOND_64_BITS).map(str),
    st.from_regex(r"-?[1-9][0-9]{20,5000}", fullmatch=True),  # long digit strings
)
# ...and, in a path, digits that are not ASCII ones (str.isdigit() accepts them, int() may not)
odd_digits = st.text(alphabet="²³¹٣੫", min_size=1, max_size=30)
path_values = st.one_of(huge_integers, odd_digits)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, artifacts: dict[str, Path]) -> Iterator[TestClient]:
    services = make_services(tmp_path_factory.mktemp("huge") / "data")
    with TestClient(build_app(services), headers=AUTH, raise_server_exceptions=False) as api:
        assert push(api, "iris", artifacts["iris.skops"]).status_code == 201
        assert api.put("/api/v1/models/iris/aliases/production", json={"version": 1}).status_code == 200
        yield api
    services.close()


# ---- the operations, from the app's /openapi.json ----------------------------------------------------
class Operation:
    def __init__(self, spec: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> None:
        self.spec, self.path, self.method, self.op = spec, path, method, op
        parameters = op.get("parameters", [])
        self.path_params = [p["name"] for p in parameters if p["in"] == "path"]
        self.numeric_query = [p["name"] for p in parameters if p["in"] == "query" and _numeric(p["schema"])]
        content = op.get("requestBody", {}).get("content", {})
        self.body_schema = (
            content.get("application/json", {}).get("schema", {}).get("$ref", "").split("/")[-1]
        )
        # raw bytes only where JSON is not an option (the push; inference takes both)
        self.raw_body = "application/octet-stream" in content and "application/json" not in content

    def __repr__(self) -> str:
        return f"{self.method.upper()} {self.path}"

    def numeric_fields(self) -> list[tuple[str, ...]]:
        if not self.body_schema:
            return []
        return list(_numeric_fields(self.spec, self.spec["components"]["schemas"][self.body_schema], ()))

    def call(
        self,
        api: TestClient,
        path_params: dict[str, str],
        query: dict[str, str] | None = None,
        body_text: bytes | None = None,
    ) -> Any:
        url = self.path
        for name, value in path_params.items():
            url = url.replace("{" + name + "}", value)
        if body_text is None:
            body_text = self.valid_body()
        headers = {"Content-Type": "application/octet-stream" if self.raw_body else "application/json"}
        return api.request(self.method, url, params=query, content=body_text, headers=headers)

    def valid_body(self) -> bytes:
        if self.raw_body:
            return b"not a model"
        if self.path.endswith("/infer"):
            return orjson.dumps(ROW)
        if self.body_schema:
            assert self.body_schema in VALID_BODY, f"add a valid {self.body_schema} body to VALID_BODY"
            return orjson.dumps(VALID_BODY[self.body_schema])
        return b""


def _numeric(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [schema])
    return any(o.get("type") in ("integer", "number") for o in options)


def _numeric_fields(
    spec: dict[str, Any], schema: dict[str, Any], at: tuple[str, ...]
) -> Iterator[tuple[str, ...]]:
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf", [prop])
        refs = [o["$ref"].split("/")[-1] for o in options if "$ref" in o]
        if _numeric(prop):
            yield (*at, name)
        for ref in refs:
            yield from _numeric_fields(spec, spec["components"]["schemas"][ref], (*at, name))


@pytest.fixture(scope="module")
def ops(client: TestClient) -> list[Operation]:
    spec = client.get("/openapi.json").json()
    return [
        Operation(spec, path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
    ]


def with_number(body: dict[str, Any], field: tuple[str, ...], number: str) -> bytes:
    """``body`` as JSON text with ``number`` (decimal text of any length) at ``field``."""
    doc = orjson.loads(orjson.dumps(body))
    node = doc
    for key in field[:-1]:
        node = node.setdefault(key, {})
    node[field[-1]] = "__NUMBER__"
    return orjson.dumps(doc).replace(b'"__NUMBER__"', number.encode())


# ---- tests ---------------------------------------------------------------------------------------------
@given(huge_integers)
@settings(max_examples=200, database=None)
def test_the_fuzz_values_are_beyond_64_bits(value: str) -> None:
    assert is_huge(value), value


def test_every_operation_with_a_path_parameter_is_fuzzed(ops: list[Operation]) -> None:
    fuzzed = {repr(op) for op in ops if op.path_params}
    assert {
        "POST /v2/models/{model}/versions/{version}/infer",
        "GET /v2/models/{model}/versions/{version}/ready",
        "GET /api/v1/models/{model}/versions/{version}",
        "DELETE /api/v1/keys/{name}",
    } <= fuzzed
    assert len(fuzzed) >= 20


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/v2/models/iris/versions/99999999999999999999/infer"),
        ("GET", "/v2/models/iris/versions/99999999999999999999/ready"),
        ("GET", "/v2/models/iris/versions/99999999999999999999"),
        ("GET", "/api/v1/models/iris/versions/99999999999999999999"),
        ("GET", "/api/v1/models/iris/versions/-99999999999999999999"),
        ("DELETE", "/api/v1/models/iris/versions/99999999999999999999"),
        ("PUT", "/api/v1/models/iris/versions/99999999999999999999/config"),
        ("GET", f"/v2/models/iris/versions/{'9' * 5000}/ready"),
        ("POST", f"/v2/models/iris/versions/{'9' * 5000}/infer"),
        ("GET", "/v2/models/iris/versions/%C2%B2"),
    ],
)
def test_version_numbers_no_registry_holds_are_not_found(client: TestClient, method: str, url: str) -> None:
    r = client.request(method, url, json=ROW if url.endswith("/infer") else {})
    assert r.status_code == 404, r.text
    assert "not found" in r.text


@given(data=st.data())
@FUZZ
def test_huge_path_parameters_answer_4xx(
    client: TestClient, ops: list[Operation], data: st.DataObject
) -> None:
    for op in ops:
        for param in op.path_params:
            value = data.draw(path_values, label=f"{op} {{{param}}}")
            r = op.call(client, {**VALID_PATH, param: value})
            assert r.status_code < 500, (op, param, r.status_code, r.text[:300])
            if param == "version":
                assert r.status_code in (400, 404), (op, r.status_code, r.text[:300])


@given(data=st.data())
@FUZZ
def test_huge_query_and_body_numbers_answer_400(
    client: TestClient, ops: list[Operation], data: st.DataObject
) -> None:
    checked = 0
    for op in ops:
        for name in op.numeric_query:
            value = data.draw(huge_integers, label=f"{op} ?{name}")
            r = op.call(client, VALID_PATH, query={name: value})
            assert r.status_code == 400, (op, name, r.status_code, r.text[:300])
            checked += 1
        for field in op.numeric_fields():
            value = data.draw(huge_integers, label=f"{op} {'.'.join(field)}")
            body = with_number(VALID_BODY[op.body_schema], field, value)
            r = op.call(client, VALID_PATH, body_text=body)
            expected = BODY_STATUS.get(op.body_schema, (400,))
            assert r.status_code in expected, (op, field, r.status_code, r.text[:300])
            checked += 1
    assert checked >= 9  # push: 3 query numbers; audit: limit; alias version; 3 batching fields; rate_limit


@given(
    where=st.sampled_from(["shape", "timeout", "binary_data_size", "header_length"]),
    value=huge_integers,
)
@FUZZ
def test_huge_numbers_in_an_inference_request_answer_4xx(client: TestClient, where: str, value: str) -> None:
    """The V2 inference body is not a documented schema: its numbers are fuzzed here by name."""
    head = {
        "inputs": [{"name": "input-0", "shape": "__N__", "datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]}]
    }
    headers = {"Content-Type": "application/json"}
    if where == "shape":
        body = orjson.dumps(head).replace(b'"__N__"', f"[1, {value}]".encode())
    else:
        head["inputs"][0]["shape"] = [1, 4]
        if where == "timeout":
            head["parameters"] = {"timeout": "__N__"}
        elif where == "binary_data_size":
            head["inputs"][0]["parameters"] = {"binary_data_size": "__N__"}
        else:
            headers["Inference-Header-Content-Length"] = value
        body = orjson.dumps(head).replace(b'"__N__"', value.encode())
    r = client.post("/v2/models/iris/infer", content=body, headers=headers)
    assert r.status_code < 500, (where, r.status_code, r.text[:300])
    if where != "timeout":  # a huge timeout is merely a long one
        assert r.status_code == 400, (where, r.status_code, r.text[:300])
    assert r.status_code == 200 or set(r.json()) == {"error"}


@pytest.mark.parametrize(
    ("datatype", "value"),
    [("INT64", "1e30"), ("INT64", str(2**63)), ("UINT8", "-1"), ("UINT8", "300"), ("FP32", "1e300")],
)
def test_tensor_values_out_of_the_datatype_range_answer_400(
    client: TestClient, datatype: str, value: str
) -> None:
    """A value the declared datatype cannot hold is refused, never wrapped round or cast to inf."""
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": datatype, "data": "__N__"}]}
    raw = orjson.dumps(body).replace(b'"__N__"', f"[{value}, 1, 1, 1]".encode())
    r = client.post("/v2/models/iris/infer", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and f"does not fit {datatype}" in r.json()["error"], r.text
