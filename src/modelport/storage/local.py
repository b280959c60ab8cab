"""Artifact store on a local directory: ``<root>/sha256/<2 hex>/<64 hex>``, temp file then rename."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from modelport.errors import DecryptionError, IntegrityError, ModelportError, NotFound
from modelport.storage.base import copy_hashing
from modelport.storage.crypto import MAGIC, BlobCipher, is_encrypted

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class LocalArtifactStore:
    """``cipher``: blobs are written encrypted (storage/crypto.py); reading handles both kinds."""

    def __init__(self, root: Path, cipher: BlobCipher | None = None) -> None:
        self.root = root
        self.cipher = cipher
        (root / "sha256").mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        if not _DIGEST.fullmatch(sha256):
            raise IntegrityError("malformed digest")
        return self.root / "sha256" / sha256[:2] / sha256

    def put(self, source: Path, sha256: str) -> None:
        final = self._path(sha256)
        if final.exists():
            source.unlink(missing_ok=True)
            return
        final.parent.mkdir(exist_ok=True)
        cipher = self.cipher
        if cipher is not None:
            self._write_via_temp(source, final, lambda src, out: cipher.encrypt(src, out, sha256))
            source.unlink(missing_ok=True)
            _fsync_dir(final.parent)
            return
        try:
            _fsync_file(source)
            os.replace(source, final)  # same filesystem: atomic and no copy
        except OSError:
            self._write_via_temp(source, final, lambda src, out: shutil.copyfileobj(src, out, 1024 * 1024))
            source.unlink(missing_ok=True)
        _fsync_dir(final.parent)

    @staticmethod
    def _write_via_temp(source: Path, final: Path, write: Callable[[BinaryIO, BinaryIO], object]) -> None:
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=final.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                write(src, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def fetch(self, sha256: str, dest: Path) -> None:
        path = self._path(sha256)
        try:
            src = path.open("rb")
        except FileNotFoundError:
            raise NotFound(f"artifact blob {sha256[:12]} is missing from the store") from None
        try:
            actual = self._read_into(src, dest, sha256)
        except ModelportError:
            dest.unlink(missing_ok=True)
            raise
        if actual != sha256:
            dest.unlink(missing_ok=True)
            raise IntegrityError(f"artifact blob {sha256[:12]} is corrupted: its sha256 no longer matches")

    def _read_into(self, src: BinaryIO, dest: Path, sha256: str) -> str:
        """Copy (decrypting if needed) a blob to ``dest``; returns the sha256 of what was written."""
        with src, dest.open("wb") as out:
            if is_encrypted(src.read(len(MAGIC))):
                if self.cipher is None:
                    raise DecryptionError(
                        f"artifact blob {sha256[:12]} is encrypted: set MODELPORT_ENCRYPTION_KEY to read it"
                    )
                src.seek(0)
                digest = hashlib.sha256()
                for chunk in self.cipher.decrypt_chunks(src, sha256):
                    digest.update(chunk)
                    out.write(chunk)
                return digest.hexdigest()
            src.seek(0)  # a blob written before encryption was turned on
            return copy_hashing(src, out)

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def digests(self) -> Iterator[str]:
        for shard in (self.root / "sha256").iterdir():
            if shard.is_dir():
                for blob in shard.iterdir():
                    if _DIGEST.fullmatch(blob.name):
                        yield blob.name

    def sweep_temp(self) -> int:
        """Remove temp files left by an interrupted write; returns how many."""
        removed = 0
        for tmp in (self.root / "sha256").glob("*/.tmp-*"):
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed


def _fsync_file(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
