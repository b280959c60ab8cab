"""Artifact store on a local directory: ``<root>/sha256/<2 hex>/<64 hex>``, temp file then rename."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from modelport.errors import IntegrityError, NotFound
from modelport.storage.base import read_chunks, write_verified

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_SHARD = re.compile(r"^[0-9a-f]{2}$")


class LocalArtifactStore:
    """Keeps bytes as given; encryption at rest wraps this store (storage/encrypted.py)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "sha256").mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        if not _DIGEST.fullmatch(sha256):
            raise IntegrityError("malformed digest")
        return self.root / "sha256" / sha256[:2] / sha256

    def put(self, source: Path, sha256: str) -> None:
        # content is kept as it is, so storing it is storing the raw bytes
        self.put_raw(source, sha256)

    def put_raw(self, source: Path, sha256: str) -> None:
        final = self._path(sha256)
        if final.exists():
            source.unlink(missing_ok=True)
            return
        final.parent.mkdir(exist_ok=True)
        try:
            _fsync_file(source)
            os.replace(source, final)  # same filesystem: atomic and no copy
        except OSError:
            self._copy_via_temp(source, final)
            source.unlink(missing_ok=True)
        _fsync_dir(final.parent)

    @staticmethod
    def _copy_via_temp(source: Path, final: Path) -> None:
        """Another filesystem: copy beside the blob, then rename, so a reader never sees half a blob."""
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=final.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self._path(sha256).open("rb")
        except FileNotFoundError:
            raise NotFound(f"artifact blob {sha256[:12]} is missing from the store") from None

    def fetch(self, sha256: str, dest: Path) -> None:
        with self.open(sha256) as src:
            write_verified(read_chunks(src), dest, sha256)

    def readable(self, sha256: str) -> None:
        self.open(sha256).close()

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def digests(self, after: str | None = None, limit: int = 1000) -> list[str]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        floor = after or ""
        page: list[str] = []
        # only one shard (about 1/256 of the store) is listed at a time; earlier shards are skipped by name
        for shard in sorted(n for n in os.listdir(self.root / "sha256") if _SHARD.fullmatch(n)):
            if shard < floor[:2]:
                continue
            try:
                names = os.listdir(self.root / "sha256" / shard)
            except (FileNotFoundError, NotADirectoryError):
                continue
            # a blob outside its own shard could not be fetched, and would break the ascending order
            page.extend(sorted(n for n in names if n > floor and _DIGEST.fullmatch(n) and n[:2] == shard))
            if len(page) >= limit:
                return page[:limit]
        return page

    def sweep_temp(self) -> int:
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
