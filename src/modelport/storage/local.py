"""Artifact store on a local directory: ``<root>/sha256/<2 hex>/<64 hex>``, temp file then rename."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelport.errors import IntegrityError, NotFound
from modelport.storage.base import copy_hashing

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class LocalArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
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
        try:
            _fsync_file(source)
            os.replace(source, final)  # same filesystem: atomic and no copy
        except OSError:
            self._copy_in(source, final)
            source.unlink(missing_ok=True)
        _fsync_dir(final.parent)

    @staticmethod
    def _copy_in(source: Path, final: Path) -> None:
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

    def fetch(self, sha256: str, dest: Path) -> None:
        path = self._path(sha256)
        try:
            src = path.open("rb")
        except FileNotFoundError:
            raise NotFound(f"artifact blob {sha256[:12]} is missing from the store") from None
        with src, dest.open("wb") as out:
            actual = copy_hashing(src, out)
        if actual != sha256:
            dest.unlink(missing_ok=True)
            raise IntegrityError(f"artifact blob {sha256[:12]} is corrupted: its sha256 no longer matches")

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
