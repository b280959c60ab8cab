"""The one place a store URL becomes an ``ArtifactStore``: cluster mode changes the URL, not the code."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from modelport.errors import ConfigError
from modelport.storage.base import ArtifactStore
from modelport.storage.crypto import BlobCipher
from modelport.storage.encrypted import EncryptedStore
from modelport.storage.local import LocalArtifactStore

SUPPORTED = "file:///absolute/path or a plain directory path"


def open_store(url: str, cipher: BlobCipher | None = None) -> ArtifactStore:
    """``file:///abs/path`` or a plain path: a local directory. ``cipher``: new blobs are written encrypted.

    Always wrapped in ``EncryptedStore``, even without a cipher, so that an encrypted blob read without a
    key says to set the key instead of looking corrupted.
    """
    return EncryptedStore(_open_inner(url), cipher)


def _open_inner(url: str) -> ArtifactStore:
    if not url.strip():
        raise ConfigError(f"MODELPORT_STORE_URL is empty; use {SUPPORTED}")
    parts = urlsplit(url)
    if not parts.scheme:
        return LocalArtifactStore(Path(url))
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"store URL {url!r} is not a local absolute path: write file:///absolute/path")
        if parts.query or parts.fragment:
            raise ConfigError(f"store URL {url!r} has a query or fragment, which file:// stores do not take")
        return LocalArtifactStore(Path(unquote(parts.path)))
    if scheme == "s3":
        raise ConfigError(
            f"store URL {url!r}: S3 artifact stores arrive with cluster mode, which is not built yet; "
            f"use {SUPPORTED}"
        )
    raise ConfigError(
        f"store URL {url!r} has an unsupported scheme {scheme!r}: supported are file:// (or a plain "
        "directory path), and s3:// once cluster mode is built"
    )
