"""docs/training.md's end-to-end example runs as written against a real server (curl and the CLI)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY, RunningServer

DOC = Path(__file__).resolve().parent.parent / "docs" / "training.md"
MARK = "<!-- tested: training-example -->"


def example() -> str:
    text = DOC.read_text()
    block = re.search(re.escape(MARK) + r"\n```bash\n(.*?)\n```", text, re.S)
    assert block, f"{DOC.name} lost its tested example"
    return block.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_training_example_runs_as_written(server: RunningServer, tmp_path: Path) -> None:
    bin_dir = str(Path(sys.executable).parent)  # python3 and the modelport CLI of this environment
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "KEY": ADMIN_KEY,
        "URL": server.url,
        "MODELPORT_URL": server.url,
        "MODELPORT_API_KEY": ADMIN_KEY,
    }
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example()],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert '"rows":300' in out.replace(" ", "")  # the upload's answer
    assert re.search(r"\d+ event: end", out) and re.search(r"\d+ event: progress", out)
    assert '"promoted": true' in out and '"state": "succeeded"' in out
    assert '"model_version":"1"' in out.replace(" ", "")  # served by the promoted version
    assert "job 2 succeeded: parcels version 2" in out  # the CLI's train --follow
    assert "kept production at version 1" in out  # a tie keeps the champion
