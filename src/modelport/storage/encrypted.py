"""Encryption at rest as a store that wraps another: ciphertext below, plaintext and its sha256 above.

The inner store keeps the ciphertext under the plaintext's digest (``put_raw``/``open``); this layer encrypts
on ``put`` and decrypts and verifies on ``fetch``. Blobs written before encryption was turned on are plain
and still read; without a key an encrypted blob is a clear error rather than a digest mismatch, which is why
the composition root wraps every store, with or without a cipher.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from modelport.errors import DecryptionError
from modelport.storage.base import ArtifactStore, read_chunks, write_verified
from modelport.storage.crypto import MAGIC, BlobCipher, is_encrypted


class EncryptedStore:
    """``cipher``: new blobs are written encrypted with it; ``None`` writes them plain (no key set)."""

    def __init__(self, inner: ArtifactStore, cipher: BlobCipher | None) -> None:
        self.inner = inner
        self.cipher = cipher

    def put(self, source: Path, sha256: str) -> None:
        if self.cipher is None:
            self.inner.put(source, sha256)
            return
        if self.inner.exists(sha256):  # same content already kept: skip the encryption work
            source.unlink(missing_ok=True)
            return
        # beside the source: on the scratch filesystem the inner store renames it into place without a copy,
        # and scratch is emptied at start-up should the process die mid-way
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-encrypt-", dir=source.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                self.cipher.encrypt(src, out, sha256)
            self.inner.put_raw(tmp, sha256)
        finally:
            tmp.unlink(missing_ok=True)
        source.unlink(missing_ok=True)

    def put_raw(self, source: Path, sha256: str) -> None:
        self.inner.put_raw(source, sha256)

    def open(self, sha256: str) -> BinaryIO:
        return self.inner.open(sha256)

    def fetch(self, sha256: str, dest: Path) -> None:
        with self.inner.open(sha256) as src:
            write_verified(self._plaintext(src, sha256), dest, sha256)

    def readable(self, sha256: str) -> None:
        with self.inner.open(sha256) as src:
            next(iter(self._plaintext(src, sha256)), b"")  # the first record proves the key

    def _plaintext(self, src: BinaryIO, sha256: str) -> Iterator[bytes]:
        head = src.read(len(MAGIC))
        if not is_encrypted(head):  # a blob written before encryption was turned on
            return itertools.chain((head,), read_chunks(src))
        if self.cipher is None:
            raise DecryptionError(
                f"artifact blob {sha256[:12]} is encrypted: set MODELPORT_ENCRYPTION_KEY to read it"
            )
        return self.cipher.decrypt_records(src, sha256)

    def exists(self, sha256: str) -> bool:
        return self.inner.exists(sha256)

    def delete(self, sha256: str) -> None:
        self.inner.delete(sha256)

    def digests(self, after: str | None = None, limit: int = 1000) -> list[str]:
        return self.inner.digests(after, limit)

    def sweep_temp(self) -> int:
        return self.inner.sweep_temp()
