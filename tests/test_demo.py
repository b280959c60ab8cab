"""``modelport serve --demo``: demo models are trained and promoted, the printed curl lines work, and the
README's quick tour (``examples/quick-tour.sh``) runs as written against it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer

REPO = Path(__file__).resolve().parent.parent
TOUR = REPO / "examples" / "quick-tour.sh"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {
        "MODELPORT_ADMIN_KEY": "",
        # the chat model trains for 3 s into a cache of this test's own, not 90 s into the user's
        "MODELPORT_DEMO_CHAT_SECONDS": "3",
        "MODELPORT_DEMO_CACHE": str(tmp_path_factory.mktemp("demo-chat-cache")),
    }
    server = RunningServer(tmp_path_factory.mktemp("demo") / "data", extra_env=env, args=("--demo",))
    yield server
    server.stop()


def test_demo_serves_models_and_its_curl_examples_work(demo: RunningServer) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    output = demo.log_path.read_text()
    key = (demo.data_dir / "admin.key").read_text().strip()
    assert key in output  # the generated key is printed once
    commands = [line for line in output.splitlines() if line.startswith("curl ")]
    assert len(commands) >= 7
    served = set()
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", command + " -sS --fail-with-body"], capture_output=True, text=True
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        body = json.loads(result.stdout)
        if isinstance(body, dict) and "object" in body:  # the OpenAI-compatible API
            assert body["model"] in ("minilm:1", "chat:1") and (body.get("data") or body.get("choices"))
            served.add(f"openai {body['model']}")
        elif isinstance(body, dict):
            assert body["model_version"] == "1" and body["outputs"]
            served.add(body["model_name"])
        else:
            assert {m["name"] for m in body} >= {"iris", "breast-cancer", "breast-cancer-onnx"}
            assert all(m["aliases"] == {"production": 1} for m in body)
    tabular = {"iris", "breast-cancer", "breast-cancer-onnx", "wine-xgboost", "diabetes-lightgbm"}
    # minilm: the real all-MiniLM-L6-v2, 384-dim embeddings; chat: the demo's small GPT-2
    assert tabular | {"minilm", "chat", "openai minilm:1", "openai chat:1"} <= served


def test_readme_quick_tour_is_the_script_and_the_script_runs(demo: RunningServer, tmp_path: Path) -> None:
    script = TOUR.read_text()
    tour = script[script.index("# --- tour ---\n") + 15 : script.index("# --- end ---")].strip()
    assert tour in (REPO / "README.md").read_text()  # the README shows exactly what runs here

    # run in a scratch directory (it writes model files), with this interpreter's bin first on PATH
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MODELPORT_URL": demo.url,
        "MODELPORT_DATA_DIR": str(demo.data_dir),
        "NO_COLOR": "1",
    }
    env.pop("MODELPORT_API_KEY", None)  # the script reads the demo's admin.key, as a user's shell would
    result = subprocess.run(["bash", str(TOUR)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flowers version 1" in result.stdout and "flowers version 2" in result.stdout
    versions = json.loads(result.stdout[result.stdout.rindex("\n[\n") + 1 :])  # the last command's output
    assert [(v["version"], v["state"]) for v in versions] == [(1, "ready"), (2, "ready")]
    key = (demo.data_dir / "admin.key").read_text().strip()
    aliases = httpx.get(
        f"{demo.url}/api/v1/models/flowers/aliases", headers={"Authorization": f"Bearer {key}"}
    )
    assert [(a["alias"], a["version"]) for a in aliases.json()] == [("production", 1)]  # rolled back
