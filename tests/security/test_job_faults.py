"""Faults around training jobs on a real server: kill -9 while a job runs, and several worker processes
claiming from one queue."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import AUTH, RunningServer

SLOW = {"model": "slow", "dataset": "sklearn:digits", "target": "target", "estimator": "random_forest",
        "params": {"n_estimators": 2000}}  # fmt: skip


def job_processes(data_dir: Path) -> list[int]:
    """PIDs of job processes working under ``data_dir`` (their command line names their directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"modelport.jobs.worker" in cmdline and str(data_dir.resolve()).encode() in cmdline:
            found.append(int(entry.name))
    return found


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_during_a_job_leaves_it_failed_interrupted_and_nothing_half_written(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = RunningServer(data)
    try:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as api:
            job = api.post("/api/v1/jobs", json=SLOW).json()
            wait_for(lambda: api.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "running", 60, "running")
            workers = wait_for(lambda: job_processes(data), 30, "the job's process")
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
    finally:
        server.stop()
    # the job's process dies with the server that started it (its parent-death signal)
    wait_for(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 10, "the job's process to end"
    )
    again = RunningServer(data)
    try:
        with httpx.Client(base_url=again.url, headers=AUTH, timeout=30) as api:
            ended = api.get(f"/api/v1/jobs/{job['id']}").json()
            assert ended["state"] == "failed" and ended["error"].startswith("interrupted"), ended
            assert ended["version"] is None
            assert api.get("/api/v1/models/slow").status_code == 404  # no version, not even a pending one
            assert api.get("/v2/health/ready").status_code == 200
    finally:
        again.stop()
    assert [p.name for p in (data / "tmp").iterdir() if p.name.startswith("job-")] == []


def test_several_workers_run_each_job_exactly_once(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "data", args=("--workers", "2"), extra_env={"MODELPORT_MAX_JOBS": "2"})
    try:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as api:
            spec = SLOW | {"model": "many", "dataset": "sklearn:iris", "params": {"n_estimators": 3}}
            ids = [api.post("/api/v1/jobs", json=spec).json()["id"] for _ in range(4)]

            def ended() -> list[dict[str, Any]] | None:
                jobs = [api.get(f"/api/v1/jobs/{i}").json() for i in ids]
                return jobs if all(j["state"] in ("succeeded", "failed", "cancelled") for j in jobs) else None

            jobs = wait_for(ended, 180, "the jobs")
            assert [j["state"] for j in jobs] == ["succeeded"] * 4, jobs
            assert sorted(j["version"] for j in jobs) == [1, 2, 3, 4]
            for i in ids:
                stream = api.get(f"/api/v1/jobs/{i}/events").text
                assert stream.count('"state":"running"') == 1, stream
            versions = api.get("/api/v1/models/many").json()["versions"]
            assert [v["version"] for v in versions] == [1, 2, 3, 4]
    finally:
        server.stop()
