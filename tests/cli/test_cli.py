"""The CLI against a real server over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelport import __version__
from modelport.cli.main import app
from tests import fixtures
from tests.conftest import ADMIN_KEY, RunningServer


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = RunningServer(tmp_path_factory.mktemp("cli") / "data")
    yield server
    server.stop()


@pytest.fixture
def cli(running: RunningServer, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("MODELPORT_URL", running.url)
    monkeypatch.setenv("MODELPORT_API_KEY", ADMIN_KEY)
    return CliRunner()


def run_json(cli: CliRunner, *args: str) -> object:
    result = cli.invoke(app, [*args, "--output", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_version_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "modelport", "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == __version__


def test_push_promote_predict_rollback_delete(cli: CliRunner, artifacts: dict[str, Path]) -> None:
    pushed = run_json(cli, "models", "push", "cli-iris", str(artifacts["iris.skops"]))
    assert pushed["version"] == 1 and pushed["state"] == "ready"  # type: ignore[index]
    run_json(cli, "models", "push", "cli-iris", str(artifacts["iris.json"]), "--framework", "xgboost")
    assert run_json(cli, "models", "promote", "cli-iris", "1")["version"] == 1  # type: ignore[index]
    assert run_json(cli, "models", "promote", "cli-iris", "2")["version"] == 2  # type: ignore[index]

    listing = run_json(cli, "models", "list")
    assert {"name": "cli-iris", "aliases": {"production": 2}}.items() <= listing[0].items()  # type: ignore[index]
    versions = run_json(cli, "models", "versions", "cli-iris")
    assert [v["framework"] for v in versions] == ["sklearn", "xgboost"]  # type: ignore[union-attr]
    shown = run_json(cli, "models", "show", "cli-iris")
    assert shown["aliases"][0]["version"] == 2  # type: ignore[index]

    rows = json.dumps(fixtures.IRIS_X[:2].tolist())
    predicted = run_json(cli, "predict", "cli-iris", "--data", rows)
    assert predicted["model_version"] == "2"  # type: ignore[index]
    assert run_json(cli, "models", "rollback", "cli-iris")["version"] == 1  # type: ignore[index]
    predicted = run_json(cli, "predict", "cli-iris", "--data", rows)
    assert predicted["model_version"] == "1"  # type: ignore[index]
    assert predicted["outputs"]["predict"] == fixtures.iris_forest().predict(fixtures.IRIS_X[:2]).tolist()  # type: ignore[index]

    table = cli.invoke(app, ["models", "list"])
    assert table.exit_code == 0 and "cli-iris" in table.stdout
    deleted = cli.invoke(app, ["models", "delete", "cli-iris", "--version", "2", "--yes"])
    assert deleted.exit_code == 0 and "deleted cli-iris version 2" in deleted.output
    assert [v["version"] for v in run_json(cli, "models", "versions", "cli-iris")] == [1]  # type: ignore[union-attr]
    refused = cli.invoke(app, ["models", "delete", "cli-iris", "--version", "1"], input="n\n")
    assert refused.exit_code == 1 and [
        v["version"] for v in run_json(cli, "models", "versions", "cli-iris")
    ] == [1]  # type: ignore[union-attr]
    assert cli.invoke(app, ["models", "delete", "cli-iris", "--yes"]).exit_code == 0
    assert run_json(cli, "models", "list") == []


def test_errors_are_reported_with_exit_code(cli: CliRunner, tmp_path: Path) -> None:
    evil = fixtures.write_pickle(tmp_path / "m.pkl", tmp_path / "canary")
    result = cli.invoke(app, ["models", "push", "evil", str(evil)])
    assert result.exit_code == 1 and "unsafe_format" in result.output
    result = cli.invoke(app, ["models", "show", "ghost"])
    assert result.exit_code == 1 and "not_found" in result.output
    result = cli.invoke(app, ["models", "list"], env={"MODELPORT_API_KEY": "wrong"})
    assert result.exit_code == 1 and "unauthenticated" in result.output


def test_key_falls_back_to_the_data_dir(
    running: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "admin.key").write_text(ADMIN_KEY + "\n")
    monkeypatch.delenv("MODELPORT_API_KEY", raising=False)
    monkeypatch.delenv("MODELPORT_ADMIN_KEY", raising=False)
    monkeypatch.setenv("MODELPORT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MODELPORT_URL", running.url)
    result = CliRunner().invoke(app, ["models", "list", "--output", "json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == [], result.output
    (tmp_path / "admin.key").write_text("mp_not-the-key\n")  # the key really comes from that file
    result = CliRunner().invoke(app, ["models", "list", "--output", "json"])
    assert result.exit_code == 1 and "unauthenticated" in result.output


def test_keys_and_audit_commands(cli: CliRunner, running: RunningServer) -> None:
    import httpx

    created = run_json(cli, "keys", "create", "ci-reader", "--scope", "read", "--expires-in-days", "7")
    secret = created["key"]  # type: ignore[index]
    assert created["scopes"] == ["read"] and created["expires_at"]  # type: ignore[index]
    listed = run_json(cli, "keys", "list")
    assert "ci-reader" in {k["name"] for k in listed} and all("key" not in k for k in listed)  # type: ignore[union-attr]
    assert (
        httpx.get(f"{running.url}/api/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 200
    )
    assert run_json(cli, "keys", "revoke", "ci-reader")["revoked_at"]  # type: ignore[index]
    assert (
        httpx.get(f"{running.url}/api/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )
    events = run_json(cli, "audit", "--action", "key.revoke")
    assert [e["target"] for e in events] == ["ci-reader"]  # type: ignore[union-attr]
    denied = run_json(cli, "audit", "--action", "auth.denied", "--limit", "1")
    assert denied[0]["actor"] == "anonymous"  # type: ignore[index]


def test_text_model_pushed_as_a_directory_and_predicted(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hugging Face directory pushed from the CLI with --task, then text in and text out of predict."""
    from tests.runtimes import textmodels

    folder = textmodels.bert_classifier(tmp_path / "bert")
    pushed = run_json(cli, "models", "push", "cli-bert", str(folder), "--task", "text-classification")
    assert pushed["state"] == "ready" and pushed["framework"] == "transformers"  # type: ignore[index]
    run_json(cli, "models", "promote", "cli-bert", "1")
    predicted = run_json(cli, "predict", "cli-bert", "--data", '["a fine day", "a bad day"]')
    outputs = predicted["outputs"]  # type: ignore[index]
    assert len(outputs["label"]) == 2 and all(isinstance(label, str) for label in outputs["label"])
    assert len(outputs["scores"]) == 2 and abs(sum(outputs["scores"][0]) - 1.0) < 1e-5
    table = cli.invoke(app, ["predict", "cli-bert", "--data", '["a fine day"]'])
    assert table.exit_code == 0 and "label" in table.stdout

    # the same directory for its embeddings, normalised: runtime settings at push, checked by the runtime
    args = ["models", "push", "cli-bert", str(folder), "--task", "feature-extraction"]
    refused = cli.invoke(app, [*args, "--runtime", '{"pooling": "max"}'])
    assert refused.exit_code != 0 and "pooling" in refused.output
    assert cli.invoke(app, [*args, "--runtime", "[1]"]).exit_code == 2
    pushed = run_json(cli, *args, "--runtime", '{"normalize": true}')
    assert pushed["version"] == 2 and pushed["config"] == {"runtime": {"normalize": True}}  # type: ignore[index]
    embedded = run_json(cli, "predict", "cli-bert", "--version", "2", "--data", '["a fine day"]')
    vector = embedded["outputs"]["embedding"][0]  # type: ignore[index]
    assert abs(sum(v * v for v in vector) - 1.0) < 1e-5
