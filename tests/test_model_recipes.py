"""docs/models.md's PyTorch and Keras recipes run as written, and what they save pushes and serves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import push

DOC = Path(__file__).resolve().parent.parent / "docs" / "models.md"


def recipe(section: str) -> str:
    """The first python block under the ``## {section}`` heading."""
    text = DOC.read_text()
    body = text[text.index(f"## {section}\n") :]
    found = re.search(r"```python\n(.*?)```", body, re.S)
    assert found is not None, section
    return found.group(1)


def run_recipe(section: str, where: Path) -> None:
    script = where / "recipe.py"  # a file, as users run it: torch.jit.script reads the source
    script.write_text(recipe(section))
    result = subprocess.run(
        [sys.executable, "-W", "ignore", str(script)], cwd=where, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]


def infer(api: TestClient, model: str, name: str) -> list[float]:
    body = {"inputs": [{"name": name, "shape": [1, 4], "datatype": "FP32", "data": [[0.1, 0.2, 0.3, 0.4]]}]}
    r = api.post(f"/v2/models/{model}/versions/1/infer", json=body)
    assert r.status_code == 200, r.text
    data: list[float] = r.json()["outputs"][0]["data"]
    return data


@pytest.mark.parametrize("artifact", ["net.pt2", "net.tar"])
def test_pytorch_recipe(api: TestClient, tmp_path: Path, artifact: str) -> None:
    run_recipe("PyTorch", tmp_path)
    r = push(api, "net", tmp_path / artifact)
    assert r.status_code == 201 and r.json()["state"] == "ready", r.text
    assert sum(infer(api, "net", "x")) == pytest.approx(1.0, abs=1e-5)  # softmax over two classes


def test_keras_recipe(api: TestClient, tmp_path: Path) -> None:
    run_recipe("Keras", tmp_path)
    r = push(api, "clf", tmp_path / "model.keras")
    assert r.status_code == 201 and r.json()["state"] == "ready", r.text
    assert sum(infer(api, "clf", "features")) == pytest.approx(1.0, abs=1e-5)


def test_hugging_face_recipe_archive_command(api: TestClient, tmp_path: Path) -> None:
    """The recipe's ``tar`` line (its ``./`` root entry included) makes an archive that pushes as is."""
    import shutil

    from tests.runtimes import textmodels

    if shutil.which("tar") is None:
        pytest.skip("tar is not installed")
    text = DOC.read_text()
    shell = re.search(r"```sh\n(.*?)```", text[text.index("## Hugging Face transformers\n") :], re.S)
    assert shell is not None
    command = next(line for line in shell.group(1).splitlines() if line.startswith("tar "))
    textmodels.bert_classifier(tmp_path / "export")
    subprocess.run(command, shell=True, cwd=tmp_path, check=True)
    r = push(api, "sentiment", tmp_path / "model.tar")
    assert r.status_code == 201 and r.json()["state"] == "ready", r.text
    assert [o["name"] for o in r.json()["signature"]["outputs"]] == ["label", "scores"]
