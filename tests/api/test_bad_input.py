"""Bad input gets the documented 4xx and JSON error, and the server keeps serving."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from tests import fixtures
from tests.conftest import push

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}


@pytest.fixture
def deployed(api: TestClient, artifacts: dict[str, Path]) -> Iterator[TestClient]:
    push(api, "iris", artifacts["iris.skops"])
    api.put("/api/v1/models/iris/aliases/production", json={"version": 1})
    before = api.post("/v2/models/iris/infer", json=ROW).json()["outputs"]
    yield api
    after = api.post("/v2/models/iris/infer", json=ROW)  # still serving, same answer
    assert after.status_code == 200 and after.json()["outputs"] == before


def v2_error(r: object, status: int) -> str:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"} and isinstance(body["error"], str)
    return body["error"]  # type: ignore[no-any-return]


def mgmt_error(r: object, status: int, code: str) -> dict[str, str]:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    error = r.json()["error"]  # type: ignore[attr-defined]
    assert error["code"] == code and error["message"]
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "malformed JSON"),
        (b"[]", "JSON object"),
        (b'{"inputs": []}', "inputs"),
        (b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64"}]}', "neither"),
        (
            b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP99", "data": [1,2,3,4]}]}',
            "datatype",
        ),
        (
            b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1,2,3]}]}',
            "elements",
        ),
        (
            b'{"inputs": [{"name": "input-0", "shape": [1, 5], "datatype": "FP64", "data": [1,2,3,4,5]}]}',
            "shape",
        ),
        (b'{"inputs": [{"name": "input-0", "shape": [4], "datatype": "FP64", "data": [1,2,3,4]}]}', "shape"),
        (
            b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ["a","b","c","d"]}]}',  # noqa: E501
            "numbers",
        ),
        (
            b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "BYTES", "data": ["a","b","c","d"]}]}',  # noqa: E501
            "FP64",
        ),
        (
            b'{"inputs": [{"name": "other", "shape": [1, 4], "datatype": "FP64", "data": [1,2,3,4]}]}',
            "unknown",
        ),
        (
            b'{"inputs": [{"name": "input-0", "shape": [1, -4], "datatype": "FP64", "data": [1,2,3,4]}]}',
            "shape",
        ),
        (
            b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [NaN,2,3,4]}]}',
            "JSON",
        ),
        (b'{"inputs": [{"name": "input-0", "shape": [0, 4], "datatype": "FP64", "data": []}]}', "input"),
    ],
)
def test_malformed_inference_requests(deployed: TestClient, body: bytes, needle: str) -> None:
    message = v2_error(deployed.post("/v2/models/iris/infer", content=body), 400)
    assert needle.lower() in message.lower()


def test_binary_header_lies_are_rejected(deployed: TestClient) -> None:
    r = deployed.post(
        "/v2/models/iris/infer", content=b"{}", headers={"Inference-Header-Content-Length": "999"}
    )
    v2_error(r, 400)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 32},
                }
            ]
        }
    )
    short = deployed.post(
        "/v2/models/iris/infer",
        content=header + b"\x00" * 8,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert "past the body" in v2_error(short, 400)


def test_unknown_model_and_version(deployed: TestClient) -> None:
    v2_error(deployed.post("/v2/models/ghost/infer", json=ROW), 404)
    v2_error(deployed.post("/v2/models/iris/versions/9/infer", json=ROW), 404)
    v2_error(deployed.get("/v2/models/ghost"), 404)
    mgmt_error(deployed.get("/api/v1/models/ghost"), 404, "not_found")
    mgmt_error(deployed.get("/api/v1/models/iris/versions/9"), 404, "not_found")


@pytest.mark.parametrize("name", ["%2e%2e", "Iris", "-iris", "a" * 64, "%00", "x%20y"])
def test_bad_model_names(deployed: TestClient, artifacts: dict[str, Path], name: str) -> None:
    error = mgmt_error(deployed.get(f"/api/v1/models/{name}"), 400, "invalid_name")
    assert error["field"] == "model"
    mgmt_error(
        deployed.post(f"/api/v1/models/{name}/versions", content=artifacts["iris.skops"].read_bytes()),
        400,
        "invalid_name",
    )
    v2_error(deployed.post(f"/v2/models/{name}/infer", json=ROW), 404)


def test_slash_in_name_is_no_route(deployed: TestClient, artifacts: dict[str, Path]) -> None:
    mgmt_error(deployed.get("/api/v1/models/a/b"), 404, "not_found")
    mgmt_error(deployed.get("/api/v1/models/iris%2Fx"), 404, "not_found")
    r = deployed.post("/api/v1/models/a/b/versions", content=artifacts["iris.skops"].read_bytes())
    mgmt_error(r, 404, "not_found")
    mgmt_error(deployed.post("/api/v1/models", json={"name": "../etc"}), 400, "invalid_name")


def test_pickle_upload_is_refused_and_never_runs(deployed: TestClient, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    evil = fixtures.write_pickle(tmp_path / "model.pkl", canary)
    error = mgmt_error(
        deployed.post("/api/v1/models/evil/versions", content=evil.read_bytes()), 400, "unsafe_format"
    )
    assert "pickle" in error["message"] and "skops" in error["message"]
    import gzip

    joblib_like = gzip.compress(evil.read_bytes())
    mgmt_error(deployed.post("/api/v1/models/evil/versions", content=joblib_like), 400, "unsafe_format")
    assert not canary.exists()
    assert deployed.get("/api/v1/models/evil").status_code == 404  # nothing was registered


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_with_parent_entry_is_refused(
    deployed: TestClient, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    payload = _zip({"model.onnx": artifacts["cancer.onnx"].read_bytes(), "../escape.txt": b"x"})
    error = mgmt_error(deployed.post("/api/v1/models/z/versions", content=payload), 400, "unsafe_archive")
    assert ".." in error["message"]
    absolute = _zip({"/tmp/abs.txt": b"x", "model.onnx": artifacts["cancer.onnx"].read_bytes()})
    mgmt_error(deployed.post("/api/v1/models/z/versions", content=absolute), 400, "unsafe_archive")
    assert not Path("/tmp/abs.txt").exists()
    with_pickle = _zip(
        {"model.onnx": artifacts["cancer.onnx"].read_bytes(), "extra/state.pkl": b"\x80\x04K\x01."}
    )
    mgmt_error(deployed.post("/api/v1/models/z/versions", content=with_pickle), 400, "unsafe_format")


def test_tar_with_symlink_is_refused(deployed: TestClient) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        link = tarfile.TarInfo("model.onnx")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    mgmt_error(deployed.post("/api/v1/models/t/versions", content=buf.getvalue()), 400, "unsafe_archive")


def test_unrecognised_bytes_name_the_safe_formats(deployed: TestClient) -> None:
    error = mgmt_error(
        deployed.post("/api/v1/models/x/versions", content=b"hello world"), 400, "unsupported_format"
    )
    assert "ONNX" in error["message"]
    mgmt_error(deployed.post("/api/v1/models/x/versions", content=b""), 400, "unsupported_format")


def test_wrong_framework_hint(deployed: TestClient, artifacts: dict[str, Path]) -> None:
    r = deployed.post(
        "/api/v1/models/x/versions",
        params={"framework": "onnx"},
        content=artifacts["iris.skops"].read_bytes(),
    )
    mgmt_error(r, 400, "unsupported_format")
    r = deployed.post("/api/v1/models/x/versions", params={"framework": "cobol"}, content=b"x")
    mgmt_error(r, 400, "invalid_input")


def test_bad_management_bodies(deployed: TestClient) -> None:
    mgmt_error(
        deployed.put("/api/v1/models/iris/aliases/production", json={"version": "x"}), 400, "invalid_input"
    )
    mgmt_error(deployed.put("/api/v1/models/iris/aliases/production", content=b"{oops"), 400, "invalid_input")
    mgmt_error(
        deployed.put("/api/v1/models/iris/aliases/Bad..Alias", json={"version": 1}), 400, "invalid_name"
    )
    mgmt_error(deployed.put("/api/v1/models/iris/aliases/staging", json={"version": 99}), 404, "not_found")
    mgmt_error(deployed.get("/api/v1/models/iris/versions/abc"), 400, "invalid_input")


def test_error_bodies_carry_no_paths_or_traces(deployed: TestClient, artifacts: dict[str, Path]) -> None:
    texts = [
        deployed.post("/api/v1/models/x/versions", content=b"\x08\x07\x12\x08garbage" * 4).text,
        deployed.post("/v2/models/iris/infer", content=b"{bad").text,
        deployed.get("/api/v1/models/%2e%2e").text,
    ]
    for text in texts:
        assert "Traceback" not in text and "/tmp" not in text and str(Path.cwd()) not in text


def test_upload_size_limit(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    from fastapi.testclient import TestClient

    from modelport.server import build_app
    from tests.conftest import AUTH, make_services

    services = make_services(tmp_path / "small", max_upload_bytes=1024, archive_max_entries=2)
    with TestClient(build_app(services), headers=AUTH) as api:
        mgmt_error(push(api, "iris", artifacts["iris.skops"]), 413, "payload_too_large")
        assert list((tmp_path / "small" / "tmp").iterdir()) == []
    services.close()


def test_archive_entry_cap(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    from modelport.server import build_app
    from tests.conftest import AUTH, make_services

    services = make_services(tmp_path / "capped", archive_max_entries=2)
    payload = _zip({"a.txt": b"1", "b.txt": b"2", "model.onnx": artifacts["cancer.onnx"].read_bytes()})
    with TestClient(build_app(services), headers=AUTH) as api:
        mgmt_error(api.post("/api/v1/models/z/versions", content=payload), 400, "unsafe_archive")
    services.close()


def test_tensor_element_limit(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    from modelport.server import build_app
    from tests.conftest import AUTH, make_services

    services = make_services(tmp_path / "lim", max_tensor_elements=40)
    with TestClient(build_app(services), headers=AUTH) as api:
        push(api, "iris", artifacts["iris.skops"])
        ok = {"inputs": [{"name": "input-0", "shape": [10, 4], "datatype": "FP64", "data": [1.0] * 40}]}
        assert api.post("/v2/models/iris/infer", json=ok).status_code == 200
        big = {"inputs": [{"name": "input-0", "shape": [11, 4], "datatype": "FP64", "data": [1.0] * 44}]}
        assert "limit is 40" in v2_error(api.post("/v2/models/iris/infer", json=big), 400)
        huge = {"inputs": [{"name": "input-0", "shape": [10**9, 10**9], "datatype": "FP64", "data": []}]}
        v2_error(api.post("/v2/models/iris/infer", json=huge), 400)
    services.close()


def test_oversized_headers_answer_431(deployed: TestClient) -> None:
    padding = {"X-Padding": "a" * 20_000}
    r = deployed.post("/v2/models/iris/infer", json=ROW, headers=padding)
    assert r.status_code == 431 and "headers" in v2_error_text(r)
    r = deployed.get("/api/v1/models", headers=padding)
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"


def v2_error_text(r: object) -> str:
    return r.json()["error"]  # type: ignore[attr-defined, no-any-return]
