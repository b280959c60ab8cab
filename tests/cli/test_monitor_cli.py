"""``modelport monitor`` and the SDK's monitoring calls against a real server."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from typer.testing import CliRunner

from modelport.cli.main import app
from modelport.client import AsyncClient, Client
from modelport.errors import InvalidInput, NotFound
from tests.conftest import ADMIN_KEY, RunningServer

IRIS = load_iris()
FAST = {"MODELPORT_STATS_BUCKET_SECONDS": "1"}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, artifacts: dict[str, Path]) -> Iterator[RunningServer]:
    server = RunningServer(tmp_path_factory.mktemp("monitor-cli") / "data", extra_env=FAST)
    with Client(server.url, ADMIN_KEY) as client:
        client.push("iris", artifacts["iris.skops"])
        client.configure_monitoring("iris", sample_rate=1.0)
        client.set_reference("iris", 1, "sklearn:iris", target="target")
        client.create_alert("iris", kind="accuracy", threshold=0.5, window="15m")
        truth = []
        for i in range(0, 150, 5):
            _, version = client.infer("iris", {"input-0": IRIS.data[i : i + 1]}, request_id=f"cli-{i}")
            assert version == "1"
            truth.append({"request_id": f"cli-{i}", "label": int(IRIS.target[i])})
        time.sleep(3)  # answers are logged within seconds (flush every 2 s); feedback then joins them
        client.feedback("iris", truth)
    yield server
    server.stop()


def test_sdk_monitoring_calls(running: RunningServer) -> None:
    with Client(running.url, ADMIN_KEY) as client:
        assert client.monitoring_config("iris")["sample_rate"] == 1.0
        page = client.predictions("iris", limit=5)
        assert len(page["predictions"]) == 5 and page["next"]
        following = client.predictions("iris", limit=100, cursor=page["next"])
        assert len(following["predictions"]) == 25
        report = client.monitoring("iris", "15m")
        (version,) = report["versions"]
        assert version["quality"]["feedback"] == 30 and version["quality"]["accuracy"] > 0.9
        assert version["drift"]["reference"]["source"] == "dataset:sklearn:iris"
        (rule,) = client.list_alerts("iris")
        with pytest.raises(InvalidInput):
            client.create_alert("iris", kind="p99", threshold=1, window="nonsense")
        with pytest.raises(NotFound):
            client.monitoring("no-such-model")
        client.delete_alert("iris", rule["id"])
        assert client.list_alerts("iris") == []
        client.create_alert("iris", kind="accuracy", threshold=0.5, window="15m")


async def test_async_sdk_reads_the_same_report(running: RunningServer) -> None:
    async with AsyncClient(running.url, ADMIN_KEY) as client:
        report = await client.monitoring("iris", 900)
        assert report["window"]["seconds"] == 900 and report["versions"][0]["requests"] >= 30
        assert len((await client.predictions("iris", limit=3, version=1))["predictions"]) == 3


@pytest.fixture
def cli(running: RunningServer, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("MODELPORT_URL", running.url)
    monkeypatch.setenv("MODELPORT_API_KEY", ADMIN_KEY)
    monkeypatch.setenv("COLUMNS", "220")
    return CliRunner()


def test_monitor_once_shows_versions_quality_drift_and_alerts(cli: CliRunner) -> None:
    result = cli.invoke(app, ["monitor", "iris", "--once", "--window", "15m"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "iris" in text and "1 *" in text and "30 rows" in text
    assert "acc " in text and "n=30" in text
    assert "petal length (cm)" in text and "accuracy" in text
    data = json.loads(cli.invoke(app, ["monitor", "iris", "--output", "json"]).stdout)
    assert data["versions"][0]["version"] == 1 and np.isclose(data["versions"][0]["quality"]["feedback"], 30)
    missing = cli.invoke(app, ["monitor", "nope", "--once"])
    assert missing.exit_code != 0 and "not found" in missing.output


def test_monitor_refreshes_live_in_a_terminal_until_interrupted(running: RunningServer) -> None:
    env = {"MODELPORT_URL": running.url, "MODELPORT_API_KEY": ADMIN_KEY, "COLUMNS": "200", "LINES": "60",
           "TERM": "xterm-256color", "PATH": "/usr/bin"}  # fmt: skip
    leader, follower = pty.openpty()  # a real terminal: rich redraws the view in place
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport", "monitor", "iris", "--interval", "0.5"],
        stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 20
    while out.count(b"versions") < 3 and time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            out += os.read(leader, 65536)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean exit
    assert proc.wait(timeout=10) == 0, out.decode(errors="replace")
    os.close(leader)
    assert out.count(b"versions") >= 3  # drawn, then redrawn at least twice
