"""Tell uploads apart by content: zip or tar directory archives versus single files, and refuse pickles.

Refused as able to run code on load: pickles of protocol 2 and later, plain or compressed with
zlib/gzip/bz2/xz (as joblib writes them), and zip files holding ``.pkl``/``.pickle`` members (torch.save),
except TorchScript archives, whose pickles only TorchScript's restricted unpickler reads.
Protocol 0/1 pickles have no header to recognise and are not refused here.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import tarfile
import zipfile
import zlib
from enum import StrEnum
from pathlib import Path

from modelport.constants import SAFE_FORMATS
from modelport.errors import UnsafeFormat

SAFE_HINT = f"push a safe format instead: {SAFE_FORMATS}"


class UploadKind(StrEnum):
    FILE = "file"
    ZIP = "zip"
    TAR = "tar"


def _is_pickle(head: bytes) -> bool:
    # protocol 2+ pickles open with the PROTO opcode and their protocol number; protocol 0/1 ones have no
    # header (their first opcode is also a common text character), so they are not recognised here
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _decompressed_head(path: Path, head: bytes) -> bytes | None:
    """First bytes of a zlib/gzip/bz2/xz stream (how joblib compresses its pickles)."""
    try:
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path) as g:
                return g.read(512)
        if head[:3] == b"BZh":
            with bz2.open(path) as b:
                return b.read(512)
        if head[:6] == b"\xfd7zXZ\x00":
            with lzma.open(path) as x:
                return x.read(512)
        if head[:1] == b"\x78" and head[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):
            with path.open("rb") as f:  # only the head: the upload may be gigabytes
                return zlib.decompressobj().decompress(f.read(65536), 512)  # bounded output
    except (OSError, EOFError, zlib.error, lzma.LZMAError):
        return None
    return None


def is_pickled(path: Path) -> bool:
    """A pickle of protocol 2 or later, plain or compressed as joblib writes them."""
    with path.open("rb") as f:
        head = f.read(512)
    inner = _decompressed_head(path, head)
    return _is_pickle(head) or (inner is not None and _is_pickle(inner))


def refuse_unsafe(path: Path, display: str = "the artifact") -> None:
    """Raise ``UnsafeFormat`` for a protocol 2+ pickle, plain or compressed (joblib), or a pickle zip."""
    with path.open("rb") as f:
        head = f.read(512)
    if _is_pickle(head):
        raise UnsafeFormat(f"{display} is a Python pickle, which can run code when loaded; {SAFE_HINT}")
    inner = _decompressed_head(path, head)
    if inner is not None and _is_pickle(inner):
        raise UnsafeFormat(f"{display} is a compressed (joblib) pickle, which can run code; {SAFE_HINT}")
    if head.startswith(b"PK\x03\x04") and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if not is_torchscript(names) and any(n.endswith((".pkl", ".pickle")) for n in names):
                raise UnsafeFormat(
                    f"{display} is a pickle-based checkpoint (e.g. torch.save), "
                    f"which can run code; {SAFE_HINT}"
                )


def is_torchscript(names: list[str]) -> bool:
    """A TorchScript archive (``torch.jit.save``): one top folder with ``code/``, ``data.pkl`` and
    ``constants.pkl``. Its pickles are read by TorchScript's own restricted unpickler (tensors and
    TorchScript types only), never by Python's ``pickle``, so they cannot run Python code."""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1:
        return False
    top = tops.pop()
    pickles = {n for n in names if n.endswith((".pkl", ".pickle"))}
    allowed = {f"{top}/data.pkl", f"{top}/constants.pkl"}
    code = any(n.startswith(f"{top}/code/") for n in names)
    return code and f"{top}/data.pkl" in pickles and pickles <= allowed


def classify_upload(path: Path, is_single_model_file: bool, *, allow_pickle: bool = False) -> UploadKind:
    """``is_single_model_file``: a runtime recognised the whole upload (e.g. a .skops zip)."""
    if not allow_pickle:
        refuse_unsafe(path)
    if is_single_model_file:
        return UploadKind.FILE
    # a zip starts with a local header; is_zipfile alone also finds a zip stored at the end of a plain tar
    with path.open("rb") as f:
        starts_as_zip = f.read(4) == b"PK\x03\x04"
    if starts_as_zip and zipfile.is_zipfile(path):
        return UploadKind.ZIP
    try:
        if tarfile.is_tarfile(path):
            return UploadKind.TAR
    except (OSError, EOFError, zlib.error):
        pass
    return UploadKind.FILE
