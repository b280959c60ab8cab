"""Extract a pushed directory archive (.zip, .tar, .tar.gz) with member checks.

Refused: absolute names, ``..`` components, links, devices and FIFOs, more than ``max_entries``
members, more than ``max_bytes`` once extracted (counted while writing, not trusted from headers).
"""

from __future__ import annotations

import gzip
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from modelport.errors import UnsafeArchive


def safe_member_path(name: str) -> PurePosixPath:
    if "\\" in name or "\x00" in name:
        raise UnsafeArchive(f"archive member {name!r} has a forbidden character")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise UnsafeArchive(f"archive member {name!r} is an absolute path")
    parts = [p for p in path.parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchive(f"archive member {name!r} escapes the archive with '..'")
    if not parts:
        raise UnsafeArchive(f"archive member {name!r} has an empty name")
    return PurePosixPath(*parts)


def _check_dir(name: str) -> None:
    """A directory entry; ``.`` is the archive's own root (``tar -cf model.tar -C export .`` writes it)."""
    if name.rstrip("/") != ".":
        safe_member_path(name)


class _Budget:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.entries_left = max_entries
        self.bytes_left = max_bytes

    def entry(self) -> None:
        self.entries_left -= 1
        if self.entries_left < 0:
            raise UnsafeArchive("archive has too many entries")

    def copy(self, src: IO[bytes], dest: Path) -> None:
        with dest.open("xb") as out:
            while chunk := src.read(1024 * 1024):
                self.bytes_left -= len(chunk)
                if self.bytes_left < 0:
                    raise UnsafeArchive("archive expands beyond the size limit")
                out.write(chunk)


def _target(root: Path, name: str) -> Path:
    rel = safe_member_path(name)
    dest = root.joinpath(*rel.parts)
    if dest.exists():
        raise UnsafeArchive(f"archive member {name!r} appears twice")
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest


def extract_zip(archive: Path, root: Path, *, max_entries: int, max_bytes: int) -> None:
    budget = _Budget(max_entries, max_bytes)
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                budget.entry()
                kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the writer recorded no type
                if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise UnsafeArchive(f"archive member {info.filename!r} is a link or special file")
                if info.is_dir():
                    _check_dir(info.filename)
                    continue
                dest = _target(root, info.filename)
                with zf.open(info) as src:
                    budget.copy(src, dest)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise UnsafeArchive(f"archive is corrupted: {exc}") from None


def extract_tar(archive: Path, root: Path, *, max_entries: int, max_bytes: int) -> None:
    budget = _Budget(max_entries, max_bytes)
    try:
        with tarfile.open(archive, mode="r:*") as tf:
            for member in tf:
                budget.entry()
                if member.isdir():
                    _check_dir(member.name)
                    continue
                if not member.isfile():
                    raise UnsafeArchive(f"archive member {member.name!r} is a link or special file")
                dest = _target(root, member.name)
                src = tf.extractfile(member)
                if src is None:
                    raise UnsafeArchive(f"archive member {member.name!r} cannot be read")
                with src:
                    budget.copy(src, dest)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise UnsafeArchive(f"archive is corrupted: {exc}") from None
