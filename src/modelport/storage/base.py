"""The artifact store seam: blobs addressed by their sha256, written atomically, verified on read."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from modelport.errors import IntegrityError, ModelportError

CHUNK = 1024 * 1024


class ArtifactStore(Protocol):
    """Blobs named by the sha256 of their content (the plaintext, whatever form they are kept in).

    Two layers: ``put`` and ``fetch`` move content and verify it against its name; ``put_raw`` and ``open``
    move the bytes exactly as kept, so that a wrapping store (encryption at rest) can transform them while
    the name and the check stay the plaintext's.
    """

    def put(self, source: Path, sha256: str) -> None:
        """Store ``source`` (whose digest the caller computed) under its digest; the source is consumed."""

    def put_raw(self, source: Path, sha256: str) -> None:
        """Keep ``source`` byte for byte under ``sha256``, atomically; the source is consumed. Unchecked:
        a wrapper's stored form (ciphertext) does not hash to the name."""

    def open(self, sha256: str) -> BinaryIO:
        """The bytes as kept, for reading; raises ``NotFound`` when the blob is missing."""

    def fetch(self, sha256: str, dest: Path) -> None:
        """Copy a blob's content to ``dest``, verifying its digest; raises ``IntegrityError`` on a mismatch
        and ``NotFound`` when it is missing. Nothing is left at ``dest`` when it fails."""

    def exists(self, sha256: str) -> bool: ...

    def readable(self, sha256: str) -> None:
        """Raise what ``fetch`` would (``NotFound``, ``DecryptionError``) without reading the whole blob:
        whether the content can be read back now, e.g. with the key this server has."""

    def delete(self, sha256: str) -> None: ...

    def digests(self, after: str | None = None, limit: int = 1000) -> list[str]:
        """Up to ``limit`` digests greater than ``after``, ascending: pass the last one back for the next
        page, so a scan of a large store holds one page at a time."""

    def sweep_temp(self) -> int:
        """Remove temp files left by an interrupted write; returns how many."""


def read_chunks(src: BinaryIO) -> Iterator[bytes]:
    while chunk := src.read(CHUNK):
        yield chunk


def write_verified(chunks: Iterable[bytes], dest: Path, sha256: str) -> None:
    """Write ``chunks`` to ``dest`` and check they hash to ``sha256``; ``dest`` is removed on failure."""
    digest = hashlib.sha256()
    try:
        with dest.open("wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
    except ModelportError:
        dest.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != sha256:
        dest.unlink(missing_ok=True)
        raise IntegrityError(f"artifact blob {sha256[:12]} is corrupted: its sha256 no longer matches")


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
