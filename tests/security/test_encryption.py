"""Artifacts encrypted at rest with MODELPORT_ENCRYPTION_KEY (AES-256-GCM); sha256 stays the plaintext's.

Encryption is a store wrapping another (``EncryptedStore`` over ``LocalArtifactStore`` here)."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelport.errors import ConfigError, DecryptionError, IntegrityError, NotFound
from modelport.server import build_app
from modelport.storage.base import ArtifactStore
from modelport.storage.crypto import MAGIC, BlobCipher, parse_key
from modelport.storage.encrypted import EncryptedStore
from modelport.storage.local import LocalArtifactStore
from tests.conftest import AUTH, make_services, push

KEY = base64.b64encode(b"k" * 32).decode()
OTHER = base64.b64encode(b"o" * 32).decode()
ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}


def encrypted(root: Path, key: str | None = KEY) -> EncryptedStore:
    return EncryptedStore(LocalArtifactStore(root), BlobCipher(parse_key(key)) if key else None)


def put(store: ArtifactStore, tmp_path: Path, data: bytes) -> tuple[str, Path]:
    """Store ``data``; returns its digest and the file that keeps it (every store here is at ``s``)."""
    src = tmp_path / "src"
    src.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    store.put(src, sha)
    assert not src.exists()  # the source is consumed
    return sha, tmp_path / "s" / "sha256" / sha[:2] / sha


def test_blobs_round_trip_encrypted(tmp_path: Path) -> None:
    store = encrypted(tmp_path / "s")
    data = os.urandom(2 * 1024 * 1024 + 12345) + b"PLAINTEXT-MARKER"  # three chunks
    sha, blob = put(store, tmp_path, data)
    raw = blob.read_bytes()
    assert raw.startswith(MAGIC) and b"PLAINTEXT-MARKER" not in raw
    with store.open(sha) as f:
        assert f.read() == raw  # the raw layer hands out the ciphertext as kept
    store.fetch(sha, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    assert store.digests() == [sha] and store.exists(sha)

    with pytest.raises(DecryptionError, match="MODELPORT_ENCRYPTION_KEY"):
        encrypted(tmp_path / "s", OTHER).fetch(sha, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
    with pytest.raises(DecryptionError, match="set MODELPORT_ENCRYPTION_KEY"):
        encrypted(tmp_path / "s", None).fetch(sha, tmp_path / "out3")
    assert not (tmp_path / "out3").exists()

    tampered = bytearray(raw)
    tampered[len(MAGIC) + 40] ^= 1
    blob.write_bytes(bytes(tampered))
    with pytest.raises(DecryptionError, match="altered"):
        store.fetch(sha, tmp_path / "out4")
    assert not (tmp_path / "out4").exists()
    blob.write_bytes(raw[: len(raw) - (12 + 16 + len(b"PLAINTEXT-MARKER") + 12345)])  # last chunk cut off
    with pytest.raises(DecryptionError):
        store.fetch(sha, tmp_path / "out5")
    assert not (tmp_path / "out5").exists()


def test_blobs_from_before_encryption_still_read(tmp_path: Path) -> None:
    sha, blob = put(LocalArtifactStore(tmp_path / "s"), tmp_path, b"written before the key was set")
    store = encrypted(tmp_path / "s")
    store.fetch(sha, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"written before the key was set"
    assert blob.read_bytes() == b"written before the key was set"  # reading does not rewrite it

    blob.write_bytes(b"written before the key was sEt")  # altered plaintext: a digest mismatch
    with pytest.raises(IntegrityError, match="corrupted") as exc:
        store.fetch(sha, tmp_path / "out2")
    assert type(exc.value) is IntegrityError and not (tmp_path / "out2").exists()
    with pytest.raises(NotFound):
        store.fetch("0" * 64, tmp_path / "out3")


def test_without_a_key_the_wrapper_writes_plain_blobs(tmp_path: Path) -> None:
    store = encrypted(tmp_path / "s", None)
    sha, blob = put(store, tmp_path, b"plain")
    assert blob.read_bytes() == b"plain"
    store.fetch(sha, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"plain"


def test_content_already_kept_is_not_written_again(tmp_path: Path) -> None:
    store = encrypted(tmp_path / "s")
    _, blob = put(store, tmp_path, b"same bytes")
    first = blob.read_bytes()
    put(store, tmp_path, b"same bytes")
    assert blob.read_bytes() == first  # fresh nonces would have changed it


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    class FullDisk(LocalArtifactStore):
        def put_raw(self, source: Path, sha256: str) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    store = EncryptedStore(FullDisk(tmp_path / "s"), BlobCipher(parse_key(KEY)))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "src").write_bytes(b"data")
    with pytest.raises(OSError) as exc:
        store.put(scratch / "src", hashlib.sha256(b"data").hexdigest())
    assert exc.value.errno == errno.ENOSPC
    assert [p.name for p in scratch.iterdir()] == ["src"]  # no ciphertext temp file left
    assert store.digests() == []


def test_the_wrapper_delegates_temp_sweeping(tmp_path: Path) -> None:
    store = encrypted(tmp_path / "s")
    sha, blob = put(store, tmp_path, b"kept")
    (blob.parent / ".tmp-interrupted").write_bytes(b"half a blob")
    assert store.sweep_temp() == 1
    assert [p.name for p in blob.parent.iterdir()] == [sha]


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


@pytest.mark.parametrize("restart_key", [None, OTHER], ids=["no-key", "wrong-key"])
def test_ready_means_servable_after_a_restart_without_the_key(
    tmp_path: Path, artifacts: dict[str, Path], restart_key: str | None
) -> None:
    data = tmp_path / "data"
    services = make_services(data, encryption_key=KEY)
    with TestClient(build_app(services), headers=AUTH) as api:
        push(api, "iris", artifacts["iris.skops"])
        assert api.get("/v2/models/iris/ready").status_code == 200
    services.close()

    services = make_services(data, encryption_key=restart_key)
    with TestClient(build_app(services), headers=AUTH) as api:
        for path in ("/v2/models/iris/ready", "/v2/models/iris/versions/1/ready"):
            r = api.get(path)
            assert r.status_code == 503 and "MODELPORT_ENCRYPTION_KEY" in r.json()["error"], r.text
        (entry,) = api.post("/v2/repository/index").json()
        assert entry["state"] == "UNAVAILABLE" and "MODELPORT_ENCRYPTION_KEY" in entry["reason"]
        assert api.post("/v2/models/iris/infer", json=ROW).status_code == 503  # ready said so truly
    services.close()
