"""The artifact store seam: blobs addressed by their sha256, written atomically, verified on read."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 1024 * 1024


class ArtifactStore(Protocol):
    def put(self, source: Path, sha256: str) -> None:
        """Store ``source`` (whose digest the caller computed) under its digest; the source is consumed."""

    def fetch(self, sha256: str, dest: Path) -> None:
        """Copy a blob to ``dest``, verifying its digest; raises ``IntegrityError`` on a mismatch."""

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> None: ...

    def digests(self) -> Iterator[str]:
        """Every digest the store holds."""


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copy_hashing(src: BinaryIO, dst: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        dst.write(chunk)
    return digest.hexdigest()
