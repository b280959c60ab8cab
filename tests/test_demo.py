"""``modelport serve --demo``: demo models are trained, promoted, and the printed curl lines work."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RunningServer


def test_demo_serves_models_and_its_curl_examples_work(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    server = RunningServer(tmp_path / "data", extra_env={"MODELPORT_ADMIN_KEY": ""}, args=("--demo",))
    try:
        output = server.log_path.read_text()
        key = (tmp_path / "data" / "admin.key").read_text().strip()
        assert key in output  # the generated key is printed once
        commands = [line for line in output.splitlines() if line.startswith("curl ")]
        assert len(commands) >= 6
        served = set()
        for command in commands:
            result = subprocess.run(
                ["bash", "-c", command + " -sS --fail-with-body"], capture_output=True, text=True
            )
            assert result.returncode == 0, (command, result.stdout, result.stderr)
            body = json.loads(result.stdout)
            if isinstance(body, dict):
                assert body["model_version"] == "1" and body["outputs"]
                served.add(body["model_name"])
            else:
                assert {m["name"] for m in body} >= {"iris", "breast-cancer", "breast-cancer-onnx"}
                assert all(m["aliases"] == {"production": 1} for m in body)
        assert {"iris", "breast-cancer", "breast-cancer-onnx", "wine-xgboost", "diabetes-lightgbm"} <= served
    finally:
        server.stop()
