"""The ``modelport`` command itself, run as a process against a real server: what a user types and sees.

One server serves the module (``running``); the tests that need a server of their own (TLS, auth off,
the last admin key) start one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelport.names import NAME_PATTERN
from tests.conftest import ADMIN_KEY, RunningServer, free_port
from tests.test_tls import self_signed


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = RunningServer(tmp_path_factory.mktemp("commands") / "data")
    yield server
    server.stop()


def modelport(
    *args: str,
    url: str | None = None,
    key: str | None = ADMIN_KEY,
    env: dict[str, str] | None = None,
    stdin: str = "",
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``modelport ARGS`` in a clean environment (no MODELPORT_* from outside), wide enough that rich
    never wraps a table cell."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")}
    base |= {"COLUMNS": "250", "MODELPORT_DATA_DIR": str(cwd or Path.cwd() / "no-such-dir")}
    if url:
        base["MODELPORT_URL"] = url
    if key:
        base["MODELPORT_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "modelport", *args],
        env=base | (env or {}),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def ok_json(running: RunningServer, *args: str) -> Any:
    done = modelport(*args, "--output", "json", url=running.url)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def one_line_error(done: subprocess.CompletedProcess[str], status: int) -> str:
    """The failure's stderr, checked to be one line (no traceback) and the exit status ``status``."""
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error"), done.stderr
    return lines[0]


# ---- ordinary failures: one line that names the problem and the fix ------------------------------
UNREACHABLE = f"http://127.0.0.1:{free_port()}"  # nothing listens there

FAILURES = {
    "server not running": (
        ["models", "list", "--url", UNREACHABLE],
        {},
        1,
        [UNREACHABLE, "--url", "MODELPORT_URL"],
    ),
    "url without scheme": (
        ["models", "list"],
        {"MODELPORT_URL": "127.0.0.1:8080"},
        2,
        ["http://127.0.0.1:8080", "--url", "MODELPORT_URL"],
    ),
    "missing CA file": (
        ["models", "list", "--url", "https://127.0.0.1:1", "--ca-file", "no-such-ca.pem"],
        {},
        2,
        ["no-such-ca.pem", "--ca-file"],
    ),
    "missing --data file": (
        ["predict", "iris", "--data", "@no-such-rows.json", "--url", UNREACHABLE],
        {},
        2,
        ["no-such-rows.json", "@file.json"],
    ),
    "NaN in --data": (["predict", "iris", "--data", "[[1.0, NaN]]"], {}, 2, ["NaN", "finite"]),
    "Infinity in --data": (["predict", "iris", "--data", "[[-Infinity]]"], {}, 2, ["-Infinity", "finite"]),
    "port out of range": (["serve", "--port", "99999"], {}, 2, ["--port", "99999", "65535"]),
    "memory budget not a size": (
        ["serve"],
        {"MODELPORT_MODEL_MEMORY_BUDGET": "lots"},
        2,
        ["MODELPORT_MODEL_MEMORY_BUDGET", "'lots'", "4GiB"],
    ),
    "allowed hosts not JSON": (
        ["serve"],
        {"MODELPORT_ALLOWED_HOSTS": "models.internal"},
        2,
        ["MODELPORT_ALLOWED_HOSTS", "not JSON", """'["models.internal"]'"""],
    ),
}


@pytest.mark.parametrize("case", FAILURES, ids=list(FAILURES))
def test_ordinary_failures_are_one_line_without_traceback(case: str, tmp_path: Path) -> None:
    args, env, status, words = FAILURES[case]
    if args[0] == "serve":
        args = [*args, "--data-dir", str(tmp_path / "data")]
    line = one_line_error(modelport(*args, env=env, cwd=tmp_path), status)
    assert all(word in line for word in words), line
    assert not (tmp_path / "data").exists()  # serve stopped before it made anything


def test_a_certificate_the_cli_cannot_verify(tmp_path: Path) -> None:
    import ssl

    from modelport.client import CertificateRejected, Client

    cert, key = self_signed(tmp_path)
    server = RunningServer(
        tmp_path / "data",
        args=("--ssl-certfile", str(cert), "--ssl-keyfile", str(key)),
        verify=ssl.create_default_context(cafile=str(cert)),
    )
    try:
        line = one_line_error(modelport("models", "list", url=server.url), 1)
        assert "certificate" in line and "--ca-file" in line and "--insecure" in line, line
        trusted = [
            modelport("models", "list", "--ca-file", str(cert), url=server.url),
            modelport("models", "list", url=server.url, env={"MODELPORT_CA_FILE": str(cert)}),
            modelport("models", "list", "--insecure", url=server.url),
            modelport("models", "list", url=server.url, env={"MODELPORT_INSECURE": "1"}),
        ]
        assert [(d.returncode, d.stderr) for d in trusted] == [(0, "")] * 4
        plain_http = server.url.replace("https://", "http://")
        assert "https://" in one_line_error(modelport("models", "list", url=plain_http), 1)
        with Client(server.url, ADMIN_KEY) as sdk, pytest.raises(CertificateRejected) as rejected:
            sdk.list_models()  # the SDK says the same with a typed error
        assert rejected.value.url == server.url
        with Client(server.url, ADMIN_KEY, verify=cert) as sdk:
            assert sdk.list_models() == []
    finally:
        server.stop()


# ---- messages -------------------------------------------------------------------------------------
def test_server_text_is_printed_as_it_is(running: RunningServer) -> None:
    refused = one_line_error(modelport("models", "show", "Not.A.Name", url=running.url), 1)
    assert NAME_PATTERN.pattern in refused  # square brackets and all, not eaten as rich markup
    description = "[bold]not bold[/bold] ids like ^[a-z]{2}$"
    created = modelport("models", "create", "bracketed", "--description", description, url=running.url)
    assert created.returncode == 0 and description in created.stdout, created.stderr
    listed = modelport("models", "list", url=running.url)
    assert listed.returncode == 0 and description in listed.stdout


def test_help_keeps_its_bracketed_words() -> None:
    helped = modelport("models", "push", "--help")
    assert helped.returncode == 0
    assert "http://127.0.0.1:8080" in helped.stdout and "MODELPORT_MAX_BATCH_SIZE" in helped.stdout


def test_auth_errors_say_how_to_pass_a_key(running: RunningServer, tmp_path: Path) -> None:
    wrong = one_line_error(modelport("models", "list", url=running.url, key="mp_wrong"), 1)
    missing = one_line_error(modelport("models", "list", url=running.url, key=None, cwd=tmp_path), 1)
    reader = ok_json(running, "keys", "create", "hint-reader", "--scope", "read")["key"]
    forbidden = one_line_error(modelport("keys", "list", url=running.url, key=reader), 1)
    for line, code in ((wrong, "unauthenticated"), (missing, "unauthenticated"), (forbidden, "forbidden")):
        assert code in line and "--api-key" in line and "MODELPORT_API_KEY" in line, line


def test_no_auth_warns_loudly_at_start(running: RunningServer, tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "data", args=("--no-auth",))
    try:
        log = server.log_path.read_text()
    finally:
        server.stop()
    assert "auth is off" in log and f"anyone who can reach http://127.0.0.1:{server.port}" in log
    assert "auth is off" not in running.log_path.read_text()


# ---- keys -----------------------------------------------------------------------------------------
def test_rate_limit_zero_is_refused_not_unlimited(running: RunningServer) -> None:
    line = one_line_error(
        modelport("keys", "create", "zero-rate", "-s", "read", "--rate-limit", "0", url=running.url), 1
    )
    assert "invalid_input" in line and "rate_limit" in line, line
    assert "zero-rate" not in {k["name"] for k in ok_json(running, "keys", "list")}


def test_keys_list_shows_limits_expiry_and_scopes_as_words(running: RunningServer) -> None:
    started = time.monotonic()
    ok_json(running, "keys", "create", "soon-gone", "-s", "read", "--expires-in-days", "0.00003")  # 2.6 s
    ok_json(running, "keys", "create", "month", "-s", "read", "--expires-in-days", "30")
    ok_json(running, "keys", "create", "rw", "-s", "write", "-s", "read", "--rate-limit", "5")
    time.sleep(max(0.0, 2.8 - (time.monotonic() - started)))  # soon-gone has expired
    listed = modelport("keys", "list", url=running.url)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[1]: line for line in listed.stdout.splitlines() if line.startswith("│ ")}
    keys = ok_json(running, "keys", "list")
    expires = next(k["expires_at"] for k in keys if k["name"] == "month")[:10]
    assert "expired" in rows["soon-gone"]
    assert f"expires {expires}" in rows["month"]
    assert "read, write" in rows["rw"] and "5/s" in rows["rw"] and "never" in rows["rw"]
    assert "['" not in listed.stdout  # no Python list reprs


def test_revoking_an_admin_key_asks_first(running: RunningServer) -> None:
    ok_json(running, "keys", "create", "ops", "-s", "admin")
    declined = modelport("keys", "revoke", "ops", url=running.url, stdin="n\n")
    assert declined.returncode == 1 and "revoke admin key 'ops'?" in declined.stdout
    keys = {k["name"]: k for k in ok_json(running, "keys", "list")}
    assert keys["ops"]["revoked_at"] is None
    confirmed = modelport("keys", "revoke", "ops", url=running.url, stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    ok_json(running, "keys", "create", "ops-2", "-s", "admin")
    assert ok_json(running, "keys", "revoke", "ops-2", "--yes")["revoked_at"]
    ok_json(running, "keys", "create", "plain", "-s", "read")
    assert ok_json(running, "keys", "revoke", "plain")["revoked_at"]  # no question


def test_revoking_the_last_admin_key_needs_force(server: RunningServer) -> None:
    refused = one_line_error(modelport("keys", "revoke", "admin", "--yes", url=server.url), 1)
    assert "last active admin key" in refused and "keys revoke admin --force" in refused, refused
    forced = modelport("keys", "revoke", "admin", "--yes", "--force", url=server.url)
    assert forced.returncode == 0 and "no active admin key is left" in forced.stderr, forced.stderr
    gone = one_line_error(modelport("keys", "list", url=server.url), 1)
    assert "unauthenticated" in gone


# ---- models ---------------------------------------------------------------------------------------
def test_model_lifecycle_commands(running: RunningServer, artifacts: dict[str, Path], tmp_path: Path) -> None:
    iris = artifacts["iris.skops"]
    created = ok_json(running, "models", "create", "flowers", "--description", "iris, by the CLI")
    assert created["description"] == "iris, by the CLI"

    pushed = ok_json(running, "models", "push", "flowers", str(iris), "--max-batch-size", "4")
    assert pushed["config"] == {"batching": {"max_batch_size": 4}}
    assert ok_json(running, "models", "config", "flowers", "1") == {"batching": {"max_batch_size": 4}}
    changed = ok_json(running, "models", "config", "flowers", "1", "--max-delay-ms", "2.5")
    assert changed == {"batching": {"max_batch_size": 4, "max_delay_ms": 2.5}}  # only that key changed
    shown = modelport("models", "config", "flowers", "1", url=running.url)
    assert "batching.max_queue" in shown.stdout and "(server default)" in shown.stdout

    again = modelport("models", "push", "flowers", str(iris), url=running.url)
    assert again.returncode == 0 and "same content as version 1" in again.stderr, again.stderr

    model_dir = tmp_path / "flowers-model"
    (model_dir / "weights").mkdir(parents=True)
    shutil.copy(iris, model_dir / "weights" / "model.skops")
    from_dir = ok_json(running, "models", "push", "flowers", str(model_dir))
    assert from_dir["version"] == 3 and from_dir["state"] == "ready", from_dir
    assert [f["path"] for f in from_dir["files"]] == ["weights/model.skops"]

    assert ok_json(running, "models", "promote", "flowers", "1", "--alias", "staging")["version"] == 1
    assert ok_json(running, "models", "promote", "flowers", "staging")["version"] == 1
    ok_json(running, "models", "promote", "flowers", "3", "--alias", "staging")
    assert ok_json(running, "models", "promote", "flowers", "staging")["version"] == 3
    aliases = ok_json(running, "models", "aliases", "flowers")
    assert {a["alias"]: a["version"] for a in aliases} == {"production": 3, "staging": 3}
    history = ok_json(running, "models", "history", "flowers")
    assert sorted(h["version"] for h in history) == [1, 3]
    staging = ok_json(running, "models", "history", "flowers", "--alias", "staging")
    assert sorted(h["version"] for h in staging) == [1, 3]

    removed = modelport("models", "unalias", "flowers", "staging", url=running.url)
    assert removed.returncode == 0 and "removed alias staging of flowers" in removed.stderr
    assert [a["alias"] for a in ok_json(running, "models", "aliases", "flowers")] == ["production"]
    for command in ("load", "unload"):
        done = modelport("models", command, "flowers", url=running.url)
        assert done.returncode == 0 and f"{command}ed flowers" in done.stderr, done.stderr

    unknown_alias = one_line_error(modelport("models", "promote", "flowers", "canary", url=running.url), 1)
    assert "not_found" in unknown_alias and "canary" in unknown_alias


def test_audit_of_one_model_page_by_page(running: RunningServer, artifacts: dict[str, Path]) -> None:
    for _ in range(3):
        ok_json(running, "models", "push", "paged", str(artifacts["iris.skops"]))
    ok_json(running, "models", "promote", "paged", "2")
    ok_json(running, "models", "push", "other-model", str(artifacts["iris.skops"]))

    page = modelport("audit", "--model", "paged", "--limit", "2", url=running.url)
    assert page.returncode == 0, page.stderr
    assert "older events: modelport audit --model paged --limit 2 --before " in page.stderr
    before = int(page.stderr.split("--before ")[1].split()[0])
    first = ok_json(running, "audit", "--model", "paged", "--limit", "2")
    assert [e["target"] for e in first] == ["paged@production", "paged/3"]
    assert before == min(e["id"] for e in first)
    rest = ok_json(running, "audit", "--model", "paged", "--before", str(before))
    assert [e["target"] for e in rest][:2] == ["paged/2", "paged/1"]
    assert all(e["id"] < before and e["target"].startswith("paged") for e in rest)
    last = modelport("audit", "--model", "paged", "--before", str(before), url=running.url)
    assert last.returncode == 0 and "older events" not in last.stderr  # fewer than --limit: the end
