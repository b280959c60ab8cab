"""``modelport datasets``, ``modelport train`` and ``modelport jobs`` against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelport.cli.main import app
from modelport.cli.training import parse_params, parse_space
from tests import fixtures
from tests.conftest import ADMIN_KEY, RunningServer

IRIS = ["--dataset", "sklearn:iris", "--target", "target", "--estimator", "random_forest"]
# runs for minutes unless cancelled: 10 classes x 5000 boosting stages
SLOW = ["--dataset", "sklearn:digits", "--target", "target", "--estimator", "gradient_boosting"]
SLOW += ["--param", "n_estimators=5000"]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = RunningServer(tmp_path_factory.mktemp("training-cli") / "data")
    yield server
    server.stop()


@pytest.fixture
def cli(running: RunningServer, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("MODELPORT_URL", running.url)
    monkeypatch.setenv("MODELPORT_API_KEY", ADMIN_KEY)
    monkeypatch.setenv("COLUMNS", "200")  # rich never wraps a cell the tests look for
    return CliRunner()


def run_json(cli: CliRunner, *args: str) -> Any:
    result = cli.invoke(app, [*args, "--output", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_datasets_commands(cli: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "toy.csv"
    data.write_text("size,weight,label\n1,2.5,a\n2,3.5,b\n3,1.0,a\n")
    pushed = run_json(cli, "datasets", "push", "toy", str(data))
    assert (pushed["version"], pushed["rows"], pushed["columns"]) == (1, 3, 3)
    table = cli.invoke(app, ["datasets", "push", "toy", str(data)])
    assert table.exit_code == 0 and "weight" in table.stdout and "float" in table.stdout

    listed = {d["name"]: d for d in run_json(cli, "datasets", "list")}
    assert listed["toy"]["latest_version"] == 2 and listed["sklearn:iris"]["bundled"]
    shown = cli.invoke(app, ["datasets", "show", "toy"])
    assert shown.exit_code == 0, shown.output
    for text in ("versions: 1, 2", "toy version 2: 3 rows, 3 columns, csv", "integer", "string", "2.5"):
        assert text in shown.stdout
    assert run_json(cli, "datasets", "show", "toy", "--version", "1")["version"] == 1
    bundled = cli.invoke(app, ["datasets", "show", "sklearn:digits"])
    assert "pixel_0_0" in bundled.stdout and "more columns" in bundled.output  # a wide preview is cut

    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,b\n1,2\n3,4,5\n")
    refused = cli.invoke(app, ["datasets", "push", "toy", str(bad)])
    assert refused.exit_code == 1 and "error (invalid_input)" in refused.output

    assert cli.invoke(app, ["datasets", "delete", "toy", "--version", "1", "--yes"]).exit_code == 0
    assert run_json(cli, "datasets", "show", "toy")["versions"] == [2]
    assert cli.invoke(app, ["datasets", "delete", "toy"], input="n\n").exit_code == 1  # asked, refused
    assert cli.invoke(app, ["datasets", "delete", "toy", "-y"]).exit_code == 0
    gone = cli.invoke(app, ["datasets", "show", "toy"])
    assert gone.exit_code == 1 and "error (not_found)" in gone.output


def test_train_follow_prints_progress_and_the_result(cli: CliRunner) -> None:
    args = ["train", "cli-iris", *IRIS, "--param", "n_estimators=10", "--param", "max_features=sqrt"]
    followed = cli.invoke(app, [*args, "--seed", "1", "--promote", "production", "--follow"])
    assert followed.exit_code == 0, followed.output
    for text in ("state: running", "[100%] done", "holdout.accuracy=", "state: succeeded"):
        assert text in followed.stderr
    assert "job 1 succeeded: cli-iris version 1" in followed.stdout
    assert "promotion: promoted production to version 1" in followed.stdout

    job = run_json(cli, "jobs", "show", "1")
    assert (job["state"], job["version"], job["spec"]["params"]) == (
        "succeeded",
        1,
        {"n_estimators": 10, "max_features": "sqrt"},
    )
    assert job["spec"]["validation"]["seed"] == 1
    assert [j["id"] for j in run_json(cli, "jobs", "list", "--model", "cli-iris")] == [1]
    assert run_json(cli, "jobs", "list", "--state", "running") == []
    shown = cli.invoke(app, ["jobs", "show", "1"])
    assert "succeeded" in shown.stdout and "promoted production" in shown.stdout
    logs = cli.invoke(app, ["jobs", "logs", "1"])
    assert logs.exit_code == 0 and "state: queued" in logs.stdout and "decision: promoted" in logs.stdout
    lines = [
        json.loads(line) for line in cli.invoke(app, ["jobs", "logs", "1", "-o", "json"]).stdout.splitlines()
    ]
    assert lines[0]["event"] == "state" and lines[-1]["event"] == "state"

    rows = json.dumps(fixtures.IRIS_X[:2].tolist())
    predicted = run_json(cli, "predict", "cli-iris", "--data", rows)  # the production alias moved to it
    assert predicted["model_version"] == "1" and predicted["outputs"]["predict"] == [0, 0]

    estimators = {e["name"]: e for e in run_json(cli, "jobs", "estimators")}
    assert "n_estimators" in estimators["random_forest"]["params"]["properties"]
    one = cli.invoke(app, ["jobs", "estimators", "mlp"])
    assert "hidden_layer_sizes" in one.stdout and "list of integer" in one.stdout


def test_bad_requests_exit_with_the_field(cli: CliRunner) -> None:
    bad = cli.invoke(app, ["train", "cli-bad", *IRIS, "--param", "n_estimators=0"])
    assert bad.exit_code == 1 and "error (invalid_spec): params.n_estimators" in bad.output
    usage = cli.invoke(app, ["train", "cli-bad", *IRIS, "--space", "max_depth=2,4"])
    assert usage.exit_code == 2 and "--search" in usage.output
    assert cli.invoke(app, ["train", "cli-bad", *IRIS, "--param", "n_estimators"]).exit_code == 2
    submitted = cli.invoke(app, ["train", "cli-queued", *SLOW])  # without --follow: the id, for scripts
    assert submitted.exit_code == 0 and submitted.stdout.strip().isdigit()
    cancelled = run_json(cli, "jobs", "cancel", submitted.stdout.strip())
    assert cancelled["state"] == "cancelled" or cancelled["cancel_requested"]
    ended = cli.invoke(app, ["jobs", "logs", submitted.stdout.strip(), "--follow"])
    assert ended.exit_code == 1 and "state: cancelled" in ended.stdout
    unknown = cli.invoke(app, ["jobs", "show", "999"])
    assert unknown.exit_code == 1 and "error (not_found)" in unknown.output


def test_params_and_spaces_parse_as_json_else_text() -> None:
    assert parse_params(["n_estimators=50", "max_features=sqrt", "hidden_layer_sizes=[64,32]", "x=a=b"]) == {
        "n_estimators": 50,
        "max_features": "sqrt",
        "hidden_layer_sizes": [64, 32],
        "x": "a=b",
    }
    assert parse_params(["alpha=NaN", "flag=true", "depth=null"]) == {
        "alpha": "NaN",
        "flag": True,
        "depth": None,
    }
    assert parse_space(["max_depth=2,4,null", "max_features=sqrt", "C=0.01:10:log", "n=1:9"]) == {
        "max_depth": [2, 4, None],
        "max_features": ["sqrt"],
        "C": {"low": 0.01, "high": 10, "log": True},
        "n": {"low": 1, "high": 9, "log": False},
    }
    assert parse_space(["hidden_layer_sizes=[[64,32],[128]]"]) == {"hidden_layer_sizes": [[64, 32], [128]]}


def modelport_follow(running: RunningServer, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MODELPORT_URL": running.url, "MODELPORT_API_KEY": ADMIN_KEY}
    return subprocess.Popen(
        [sys.executable, "-m", "modelport", *args, "--follow"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def interrupt_when_running(proc: subprocess.Popen[str], answer: str) -> tuple[int, str]:
    """Ctrl-C once the job runs, answer the prompt; the exit status and everything on stderr."""
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + 60
    while "state: running" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(answer, timeout=60)
    return proc.returncode, seen + rest


def test_ctrl_c_while_following_cancels_or_leaves_the_job(cli: CliRunner, running: RunningServer) -> None:
    kept, text = interrupt_when_running(modelport_follow(running, "train", "cli-slow", *SLOW), "n\n")
    assert kept == 130, text
    assert "Cancel job" in text and "follow it again with: modelport jobs logs" in text
    job = run_json(cli, "jobs", "list", "--model", "cli-slow")[0]
    assert job["state"] == "running"
    started = time.monotonic()
    so_far = cli.invoke(app, ["jobs", "logs", str(job["id"])])  # what there is, without waiting for the end
    assert so_far.exit_code == 0 and "state: running" in so_far.stdout and time.monotonic() - started < 10
    stopping = cli.invoke(app, ["jobs", "cancel", str(job["id"])])
    assert stopping.exit_code == 0 and f"job {job['id']} is stopping" in stopping.output
    ended = cli.invoke(app, ["jobs", "logs", str(job["id"]), "--follow"])
    assert ended.exit_code == 1 and "state: cancelled" in ended.stdout

    cancelled, text = interrupt_when_running(modelport_follow(running, "train", "cli-slow", *SLOW), "y\n")
    assert cancelled == 1, text
    assert "error: job" in text and "cancelled: cancelled by request" in text
    assert [j["state"] for j in run_json(cli, "jobs", "list", "--model", "cli-slow")] == ["cancelled"] * 2
