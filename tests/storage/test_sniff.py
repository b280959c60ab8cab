from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import zipfile
import zlib
from pathlib import Path

import pytest

from modelport.errors import UnsafeArchive, UnsafeFormat
from modelport.storage.archive import safe_member_path
from modelport.storage.sniff import UploadKind, classify_upload, refuse_unsafe


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickles_of_every_protocol_are_refused(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=protocol))
    with pytest.raises(UnsafeFormat, match="pickle"):
        refuse_unsafe(path)


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress, zlib.compress])
def test_compressed_pickles_are_refused(tmp_path: Path, compress: object) -> None:
    path = tmp_path / "m.joblib"
    path.write_bytes(compress(pickle.dumps([1, 2, 3])))  # type: ignore[operator]
    with pytest.raises(UnsafeFormat, match="joblib"):
        refuse_unsafe(path)


def test_torch_style_zip_checkpoint_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(1))
    path = tmp_path / "model.pt"
    path.write_bytes(buf.getvalue())
    with pytest.raises(UnsafeFormat, match="checkpoint"):
        classify_upload(path, is_single_model_file=False)


def test_archives_and_files_are_told_apart(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    assert classify_upload(artifacts["iris.skops"], is_single_model_file=True) is UploadKind.FILE
    assert classify_upload(artifacts["cancer.onnx"], is_single_model_file=True) is UploadKind.FILE
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("x.txt", "x")
    assert classify_upload(z, is_single_model_file=False) is UploadKind.ZIP


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "a\\b", "", "./"])
def test_unsafe_member_names(name: str) -> None:
    with pytest.raises(UnsafeArchive):
        safe_member_path(name)


def test_safe_member_names_are_normalised() -> None:
    assert str(safe_member_path("./dir//model.onnx")) == "dir/model.onnx"


def test_a_plain_tar_ending_with_a_zip_member_is_a_tar(tmp_path: Path) -> None:
    """``zipfile.is_zipfile`` finds a zip stored at the end of an uncompressed tar (e.g. a TorchScript
    archive followed by nothing but padding): the upload is still the tar."""
    import tarfile

    inner = tmp_path / "model.pt"
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("model/code/__torch__.py", "def forward(self, x): return x\n")
    (tmp_path / "signature.json").write_text("{}")
    archive = tmp_path / "bundle.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "signature.json", arcname="signature.json")
        tar.add(inner, arcname="model.pt")
    assert zipfile.is_zipfile(archive)  # the trap
    assert classify_upload(archive, False) is UploadKind.TAR
