"""Encryption at rest for artifact blobs: AES-256-GCM in 1 MiB chunks.

Layout: ``MPENC1`` then, per chunk, a 12-byte random nonce and the ciphertext with its 16-byte tag. Each
chunk's associated data binds it to the blob's digest, its position and whether it is the last one, so
chunks cannot be reordered, swapped between blobs or cut off. Blobs keep the sha256 of their plaintext as
their name, so content addressing and verification are unchanged.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from modelport.errors import ConfigError, DecryptionError

MAGIC = b"MPENC1"
CHUNK = 1024 * 1024
NONCE = 12
TAG = 16


def parse_key(value: str) -> bytes:
    """``MODELPORT_ENCRYPTION_KEY``: 32 random bytes, base64 (``openssl rand -base64 32``)."""
    try:
        key = base64.b64decode(value.strip(), altchars=b"-_" if ("-" in value or "_" in value) else None)
    except (binascii.Error, ValueError):
        raise ConfigError("MODELPORT_ENCRYPTION_KEY must be base64 of 32 random bytes") from None
    if len(key) != 32:
        raise ConfigError("MODELPORT_ENCRYPTION_KEY must decode to exactly 32 bytes (AES-256)")
    return key


class BlobCipher:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @staticmethod
    def _aad(digest: str, index: int, last: bool) -> bytes:
        return digest.encode() + struct.pack(">Q?", index, last)

    def encrypt(self, src: BinaryIO, dst: BinaryIO, digest: str) -> None:
        dst.write(MAGIC)
        chunk = src.read(CHUNK)
        index = 0
        while True:
            following = src.read(CHUNK)
            last = not following
            nonce = os.urandom(NONCE)
            dst.write(nonce + self._aead.encrypt(nonce, chunk, self._aad(digest, index, last)))
            if last:
                return
            chunk, index = following, index + 1

    def decrypt_chunks(self, src: BinaryIO, digest: str) -> Iterator[bytes]:
        """The plaintext, chunk by chunk; raises ``DecryptionError`` on a wrong key or altered bytes."""
        if src.read(len(MAGIC)) != MAGIC:
            raise DecryptionError(f"artifact blob {digest[:12]} is not encrypted with modelport's format")
        return self.decrypt_records(src, digest)

    def decrypt_records(self, src: BinaryIO, digest: str) -> Iterator[bytes]:
        """As ``decrypt_chunks`` once ``MAGIC`` has been read: a reader that looked at a blob's head to
        tell its kind goes on from there, without seeking back (a store's stream may not seek)."""
        record = NONCE + CHUNK + TAG
        block = src.read(record)
        index = 0
        while True:
            following = src.read(record)
            last = not following
            if len(block) < NONCE + TAG:
                raise DecryptionError(f"artifact blob {digest[:12]} is truncated")
            try:
                yield self._aead.decrypt(block[:NONCE], block[NONCE:], self._aad(digest, index, last))
            except InvalidTag:
                raise DecryptionError(
                    f"artifact blob {digest[:12]} cannot be decrypted: wrong MODELPORT_ENCRYPTION_KEY, "
                    "or the blob was altered"
                ) from None
            if last:
                return
            block, index = following, index + 1


def is_encrypted(head: bytes) -> bool:
    return head.startswith(MAGIC)
