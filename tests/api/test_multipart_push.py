"""A push sent as multipart/form-data (``curl -F file=@model.skops``) stores the file, never the envelope."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelport.api.management.multipart import SingleFileParts
from modelport.errors import InvalidInput
from modelport.server import Services

URL = "/api/v1/models/iris/versions"
FIELD_ONLY = b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nnot a file\r\n--b--\r\n'


def versions(api: TestClient) -> list[int]:
    r = api.get(URL)
    return [v["version"] for v in r.json()] if r.status_code == 200 else []


def test_multipart_push_stores_the_file_part_with_its_sha256(
    api: TestClient, artifacts: dict[str, Path]
) -> None:
    data = artifacts["iris.skops"].read_bytes()
    r = api.post(URL, files={"file": ("model.skops", data, "application/octet-stream")})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["state"] == "ready" and body["framework"] == "sklearn"
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["size"] == len(data)
    assert [(f["path"], f["sha256"]) for f in body["files"]] == [("model.skops", body["sha256"])]
    named = api.post(URL, params={"filename": "given.skops"}, files={"file": ("model.skops", data)})
    assert named.json()["files"][0]["path"] == "given.skops"  # the query parameter wins
    assert named.json()["same_sha256_as"] == [1]


def test_raw_push_with_curls_default_content_type_is_still_raw(
    api: TestClient, artifacts: dict[str, Path]
) -> None:
    data = artifacts["iris.skops"].read_bytes()  # curl --data-binary sends x-www-form-urlencoded
    r = api.post(URL, content=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 201 and r.json()["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"files": [("file", ("a.skops", b"one")), ("file", ("b.skops", b"two"))]}, "exactly one file part"),
        ({"files": {"file": ("a.skops", b"one")}, "data": {"framework": "sklearn"}}, "'framework'"),
        (
            {
                "content": FIELD_ONLY,
                "headers": {"Content-Type": "multipart/form-data; boundary=b"},
            },
            "no other fields",
        ),
    ],
)
def test_multipart_push_refused_unless_one_file_part(
    api: TestClient, services: Services, kwargs: dict[str, object], needle: str
) -> None:
    r = api.post(URL, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert needle in error["message"] and "--data-binary" in error["message"]
    assert versions(api) == []
    assert list(services.repository.store.digests()) == []


def test_truncated_multipart_body_is_refused(api: TestClient, services: Services) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.skops"\r\n\r\n'.encode()
        + b"\x00" * 100
    )
    r = api.post(URL, content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 400 and "closing boundary" in r.json()["error"]["message"]
    assert versions(api) == []
    leftovers = [p.name for p in (services.settings.data_dir / "tmp").iterdir()]
    assert leftovers == []


def envelope(boundary: bytes, content: bytes, filename: str = "m.bin") -> bytes:
    return (
        b"preamble\r\n--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="' + filename.encode() + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--" + boundary + b"--\r\nepilogue"
    )


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 10_000])
def test_parser_streams_content_across_any_chunking(chunk: int) -> None:
    boundary = b"XyZ"
    # content that looks like the start of a delimiter without being one
    content = b"a\r\n--Xy\r\n-b\r\n--XyQ" + bytes(range(256)) * 3 + b"\r\n"
    out: list[bytes] = []
    parts = SingleFileParts(boundary, out.append)
    body = envelope(boundary, content)
    for i in range(0, len(body), chunk):
        parts.feed(body[i : i + chunk])
    assert parts.finish() == "m.bin"
    assert b"".join(out) == content


def test_parser_refuses_endless_part_headers() -> None:
    parts = SingleFileParts(b"b", lambda _: None)
    parts.feed(b"--b\r\nContent-Disposition: form-data; name=file; filename=x\r\n")
    with pytest.raises(InvalidInput, match="headers"):
        parts.feed(b"X-Pad: " + b"a" * 20_000)


def test_bytes_outside_the_parts_are_bounded(api: TestClient, artifacts: dict[str, Path]) -> None:
    data = artifacts["iris.skops"].read_bytes()
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="m.skops"\r\n\r\n' + data
    for body in (
        b"x" * 100_000 + b"\r\n" + part + b"\r\n--b--\r\n",
        part + b"\r\n--b--\r\n" + b"y" * 100_000,
    ):
        r = api.post(URL, content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert r.status_code == 400 and "outside its parts" in r.json()["error"]["message"], r.text
    assert versions(api) == []


@pytest.mark.parametrize("name", ["a\x00b.skops", "é" * 200 + ".skops", "../../etc/passwd"])
def test_any_client_file_name_is_stored_safely(
    api: TestClient, artifacts: dict[str, Path], name: str
) -> None:
    r = api.post(URL, files={"file": (name, artifacts["iris.skops"].read_bytes())})
    assert r.status_code == 201, r.text
    (stored,) = r.json()["files"]
    assert "/" not in stored["path"] and "\x00" not in stored["path"] and len(stored["path"].encode()) <= 200
