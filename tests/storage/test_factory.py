"""One factory turns a store URL into a store; unsupported URLs are refused with a clear error."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from modelport.errors import ConfigError
from modelport.settings import Settings
from modelport.storage.base import ArtifactStore
from modelport.storage.crypto import MAGIC, BlobCipher, parse_key
from modelport.storage.factory import open_store
from tests.conftest import make_services

KEY = base64.b64encode(b"k" * 32).decode()


def round_trip(store: ArtifactStore, tmp_path: Path, data: bytes) -> str:
    src = tmp_path / "src"
    src.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    store.put(src, sha)
    store.fetch(sha, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    return sha


def test_file_url_opens_a_local_store_at_that_path(tmp_path: Path) -> None:
    root = tmp_path / "with space" / "artifacts"
    store = open_store(root.as_uri())  # as_uri percent-encodes the space
    sha = round_trip(store, tmp_path, b"model bytes")
    assert (root / "sha256" / sha[:2] / sha).read_bytes() == b"model bytes"
    assert store.digests() == [sha]
    assert open_store(f"file://localhost{tmp_path / 'other'}").digests() == []
    assert (tmp_path / "other" / "sha256").is_dir()


def test_plain_paths_open_a_local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = round_trip(open_store(str(tmp_path / "abs")), tmp_path, b"abs")
    assert (tmp_path / "abs" / "sha256" / sha[:2] / sha).is_file()
    monkeypatch.chdir(tmp_path)
    sha = round_trip(open_store("rel/store"), tmp_path, b"rel")
    assert (tmp_path / "rel" / "store" / "sha256" / sha[:2] / sha).is_file()


def test_a_cipher_makes_the_store_write_encrypted(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s"), BlobCipher(parse_key(KEY)))
    sha = round_trip(store, tmp_path, b"secret weights")
    raw = (tmp_path / "s" / "sha256" / sha[:2] / sha).read_bytes()
    assert raw.startswith(MAGIC) and b"secret weights" not in raw


def test_s3_is_refused_until_cluster_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="S3 artifact stores arrive with cluster mode") as exc:
        open_store("s3://bucket/prefix")
    assert "file://" in exc.value.message


@pytest.mark.parametrize("url", ["gs://bucket/x", "ftp://host/x", "http://host/store"])
def test_unknown_schemes_are_refused_naming_the_supported_ones(url: str) -> None:
    with pytest.raises(ConfigError) as exc:
        open_store(url)
    scheme = url.split(":", 1)[0]
    assert f"unsupported scheme {scheme!r}" in exc.value.message
    assert "file://" in exc.value.message and "s3://" in exc.value.message


@pytest.mark.parametrize("url", ["file://otherhost/srv/store", "file:relative/store", "file:///x?y=1", " "])
def test_malformed_local_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="file://"):
        open_store(url)


def test_settings_default_to_the_data_dir_and_the_env_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELPORT_STORE_URL", raising=False)
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.resolved_store_url == (tmp_path / "data" / "artifacts").resolve().as_uri()
    assert settings.resolved_store_url.startswith("file:///")
    monkeypatch.setenv("MODELPORT_STORE_URL", "s3://bucket/prefix")
    assert Settings(data_dir=tmp_path / "data").resolved_store_url == "s3://bucket/prefix"


def test_services_keep_blobs_where_the_store_url_points(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    elsewhere = tmp_path / "elsewhere"
    services = make_services(tmp_path / "data", store_url=elsewhere.as_uri())
    try:
        record = services.repository.push_bytes("iris", [artifacts["iris.skops"].read_bytes()], by="t")
        sha = record.manifest[0].sha256
        assert (elsewhere / "sha256" / sha[:2] / sha).is_file()
        assert not (tmp_path / "data" / "artifacts").exists()
    finally:
        services.close()
