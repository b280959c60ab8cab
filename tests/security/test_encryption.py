"""Artifacts encrypted at rest with MODELPORT_ENCRYPTION_KEY (AES-256-GCM); sha256 stays the plaintext's."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelport.errors import ConfigError, DecryptionError
from modelport.server import build_app
from modelport.storage.crypto import MAGIC, BlobCipher, parse_key
from modelport.storage.local import LocalArtifactStore
from tests.conftest import AUTH, make_services, push

KEY = base64.b64encode(b"k" * 32).decode()
OTHER = base64.b64encode(b"o" * 32).decode()
ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}


def put(store: LocalArtifactStore, tmp_path: Path, data: bytes) -> tuple[str, Path]:
    src = tmp_path / "src"
    src.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    store.put(src, sha)
    return sha, store.root / "sha256" / sha[:2] / sha


def test_blobs_round_trip_encrypted(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "s", BlobCipher(parse_key(KEY)))
    data = os.urandom(2 * 1024 * 1024 + 12345) + b"PLAINTEXT-MARKER"  # three chunks
    sha, blob = put(store, tmp_path, data)
    raw = blob.read_bytes()
    assert raw.startswith(MAGIC) and b"PLAINTEXT-MARKER" not in raw
    store.fetch(sha, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data

    wrong = LocalArtifactStore(tmp_path / "s", BlobCipher(parse_key(OTHER)))
    with pytest.raises(DecryptionError, match="MODELPORT_ENCRYPTION_KEY"):
        wrong.fetch(sha, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
    with pytest.raises(DecryptionError, match="set MODELPORT_ENCRYPTION_KEY"):
        LocalArtifactStore(tmp_path / "s").fetch(sha, tmp_path / "out3")

    tampered = bytearray(raw)
    tampered[len(MAGIC) + 40] ^= 1
    blob.write_bytes(bytes(tampered))
    with pytest.raises(DecryptionError):
        store.fetch(sha, tmp_path / "out4")
    blob.write_bytes(raw[: len(raw) - (12 + 16 + len(b"PLAINTEXT-MARKER") + 12345)])  # last chunk cut off
    with pytest.raises(DecryptionError):
        store.fetch(sha, tmp_path / "out5")


def test_key_must_be_32_bytes_of_base64() -> None:
    for bad in ("short", base64.b64encode(b"x" * 16).decode(), "!!!not base64!!!"):
        with pytest.raises(ConfigError):
            parse_key(bad)
    assert parse_key(base64.urlsafe_b64encode(b"\xff" * 32).decode()) == b"\xff" * 32


def test_served_encrypted_and_a_wrong_key_is_a_clear_error(
    tmp_path: Path, artifacts: dict[str, Path]
) -> None:
    data = tmp_path / "data"
    services = make_services(data, encryption_key=KEY)
    with TestClient(build_app(services), headers=AUTH) as api:
        pushed = push(api, "iris", artifacts["iris.skops"]).json()
        assert pushed["sha256"] == hashlib.sha256(artifacts["iris.skops"].read_bytes()).hexdigest()
        answer = api.post("/v2/models/iris/infer", json=ROW).json()
    services.close()
    for blob in (data / "artifacts" / "sha256").glob("*/*"):
        assert blob.read_bytes().startswith(MAGIC)

    services = make_services(data, encryption_key=OTHER)
    with TestClient(build_app(services), headers=AUTH) as api:
        r = api.post("/v2/models/iris/infer", json=ROW)
        assert r.status_code == 503 and "MODELPORT_ENCRYPTION_KEY" in r.json()["error"]
        assert api.get("/v2/health/live").status_code == 200
    services.close()

    services = make_services(data, encryption_key=KEY)
    with TestClient(build_app(services), headers=AUTH) as api:
        assert api.post("/v2/models/iris/infer", json=ROW).json() == answer
    services.close()
