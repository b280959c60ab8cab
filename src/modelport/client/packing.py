"""A model directory pushed as one artifact: archived on the fly to a temporary ``.tar.gz``."""

from __future__ import annotations

import gzip
import os
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelport.errors import InvalidInput

# Model weights barely compress; the fastest level saves most of the time and little of the size.
COMPRESS_LEVEL = 1


@contextmanager
def packed(path: str | Path) -> Iterator[Path]:
    """``path`` itself when it is a file; for a directory, a ``NAME.tar.gz`` of its files (members
    relative to the directory, symbolic links followed), deleted on exit."""
    path = Path(path)
    if not path.is_dir():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="modelport-push-") as tmp:
        yield pack_directory(path, Path(tmp))


def pack_directory(directory: Path, into: Path) -> Path:
    """Write ``into/<directory name>.tar.gz`` holding the directory's files, paths relative to it."""
    files = list(_files(directory))
    if not files:
        raise InvalidInput(f"directory {str(directory)!r} holds no files to push", field="path")
    archive = into / f"{directory.resolve().name or 'model'}.tar.gz"
    # The same files give the same bytes (no times, owners or modes), so the server's sha256 tells a
    # directory pushed again from a version with that content. dereference: links become the files they
    # point at (the server refuses links inside archives).
    with (
        archive.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, dereference=True) as tar,
    ):
        for file, member in files:
            tar.add(file, arcname=member, recursive=False, filter=_anonymous)
    return archive


def _anonymous(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.mtime, member.mode = 0, 0o644
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


def _files(directory: Path) -> Iterator[tuple[Path, str]]:
    """Each regular file under ``directory`` and its POSIX path relative to it, in a stable order;
    linked directories are followed once (a link cycle is not walked twice)."""
    seen: set[str] = set()
    for root, dirs, names in os.walk(directory, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(names):
            file = Path(root, name)
            if file.is_file():  # follows links; skips sockets, devices and dangling links
                yield file, file.relative_to(directory).as_posix()
