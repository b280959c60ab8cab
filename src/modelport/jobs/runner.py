"""Running jobs in the server: claim (once cluster-wide), launch the job's process, relay its progress,
enforce wall-clock time and cancellation, then publish the result through the normal push path.

Each server process runs one ``JobRunner``. It claims queued jobs while fewer than ``max_running`` run
cluster-wide, gives each its own working directory under the scratch folder (swept at start-up, so a
crash leaves nothing half-written) and a thread that owns its process. The process is
``python -m modelport.jobs.worker DIR``: it confines itself (memory, CPU time, parent-death signal),
reads ``DIR/job.json``, prints events as JSON lines and writes ``DIR/result.json`` and the artifact.
Heartbeats carry progress to the registry and bring back cancel requests; a job whose heartbeat stops
(its server died) is failed as interrupted by any other process.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from modelport.datasets.service import DatasetService
from modelport.errors import ModelportError
from modelport.jobs.process import Relay, failure, kill, launch
from modelport.jobs.promotion import decide
from modelport.jobs.spec import JobSpec
from modelport.jobs.submission import prepare
from modelport.registry import Registry, VersionState
from modelport.registry.db import utcnow
from modelport.registry.jobs import JobRecord, JobState
from modelport.repository import ModelRepository

log = logging.getLogger("modelport.jobs")


@dataclass(frozen=True)
class JobLimits:
    """The server's limits for every job (a job may ask for lower ones)."""

    max_running: int
    memory_bytes: int
    cpu_seconds: int
    wall_seconds: int
    threads: int
    poll_interval: float = 1.0
    heartbeat_interval: float = 1.0
    stale_after: float = 30.0  # a running job's heartbeat older than this: its server is gone


class JobRunner:
    def __init__(
        self,
        registry: Registry,
        repository: ModelRepository,
        datasets: DatasetService,
        limits: JobLimits,
        scratch: Path,
        on_promoted: Callable[[], object] = lambda: None,
    ) -> None:
        self.registry = registry
        self.repository = repository
        self.datasets = datasets
        self.limits = limits
        self.scratch = scratch
        self.on_promoted = on_promoted
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._running: dict[int, subprocess.Popen[bytes]] = {}  # job id -> its process, while it runs
        self._held: dict[int, threading.Thread] = {}  # job id -> the thread that owns it, to the end
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        scratch.mkdir(parents=True, exist_ok=True)

    # ---- requests -----------------------------------------------------------------------------
    def submit(self, spec: JobSpec, *, by: str) -> JobRecord:
        submission = prepare(spec, self.datasets)
        record = self.registry.jobs.submit(
            kind="train",
            model=spec.model,
            dataset=submission.dataset.name,
            dataset_version=submission.dataset.version,
            spec=submission.stored(),
            by=by,
        )
        self.registry.audit.record(
            actor=by,
            action="job.submit",
            target=f"job/{record.id}",
            details={"model": spec.model, "dataset": submission.dataset.ref, "estimator": spec.estimator},
        )
        self._wake.set()
        return record

    def cancel(self, job_id: int, *, by: str) -> JobRecord:
        record = self.registry.jobs.cancel(job_id)
        self.registry.audit.record(actor=by, action="job.cancel", target=f"job/{job_id}")
        with self._lock:
            process = self._running.get(job_id)
        if process is not None:  # ours: stop it now rather than at the next heartbeat
            kill(process)
        return record

    # ---- the loop -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="modelport-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop claiming; kill this process's jobs and record them as interrupted."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            running, held = list(self._running.values()), list(self._held.values())
        for process in running:
            kill(process)
        for thread in [*held, *([self._thread] if self._thread else [])]:
            thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # a registry hiccup must not end the loop
                log.exception("job loop")
            self._wake.wait(self.limits.poll_interval)
            self._wake.clear()

    def _tick(self) -> None:
        with self._lock:
            held = list(self._held)
        self.registry.jobs.touch(held, self.owner)  # alive while fetching inputs or publishing results
        stale = utcnow() - timedelta(seconds=self.limits.stale_after)
        for interrupted in self.registry.jobs.interrupt(stale_before=stale):
            log.warning("job %s was interrupted (its server stopped heart-beating)", interrupted.id)
        while not self._stop.is_set():
            claimed = self.registry.jobs.claim(self.owner, self.limits.max_running)
            if claimed is None:
                return
            thread = threading.Thread(
                target=self._run, args=(claimed,), name=f"modelport-job-{claimed.id}", daemon=True
            )
            with self._lock:
                self._held[claimed.id] = thread
            thread.start()

    # ---- one job ------------------------------------------------------------------------------
    def _run(self, job: JobRecord) -> None:
        workdir = self.scratch / f"job-{job.id}-{secrets.token_hex(4)}"
        workdir.mkdir(parents=True)
        try:
            self._execute(job, workdir)
        except Exception as exc:
            message = exc.message if isinstance(exc, ModelportError) else f"{type(exc).__name__}: {exc}"
            log.exception("job %s failed", job.id)
            error = message.replace(str(self.scratch), "<scratch>")[:1000]
            self._finish(job, JobState.FAILED, error=error)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            with self._lock:
                self._held.pop(job.id, None)

    def _execute(self, job: JobRecord, workdir: Path) -> None:
        spec = JobSpec.model_validate(job.spec["request"])
        dataset = self.datasets.resolve(_dataset_ref(job))
        champion = self._champion(spec, job.spec["features"], workdir)
        memory, cpu, wall = self._limits_for(spec)
        payload = {
            "spec": spec.model_dump(mode="json"),
            "task": job.spec["task"],
            "features": job.spec["features"],
            "metric": job.spec["metric"],
            "dataset": self.datasets.materialise(dataset, workdir),
            "champion": champion,
            "threads": self.limits.threads,
            "limits": {"memory_bytes": memory, "cpu_seconds": cpu, "parent_pid": os.getpid()},
        }
        (workdir / "job.json").write_text(json.dumps(payload))
        outcome = self._supervise(job, workdir, wall)
        if outcome is not None:
            state, error = outcome
            self._finish(job, state, error=error)
            return
        result = json.loads((workdir / "result.json").read_text())
        self._publish(job, spec, result, workdir, champion)

    def _limits_for(self, spec: JobSpec) -> tuple[int, int, int]:
        asked, server = spec.limits, self.limits
        memory = (
            server.memory_bytes
            if asked.memory_mb is None
            else min(server.memory_bytes, asked.memory_mb << 20)
        )
        cpu = min(server.cpu_seconds, asked.cpu_seconds or server.cpu_seconds)
        wall = min(server.wall_seconds, asked.wall_seconds or server.wall_seconds)
        return memory, cpu, wall

    def _champion(self, spec: JobSpec, features: list[str], workdir: Path) -> dict[str, Any] | None:
        """The version the promote alias serves now, with its files, for the job to score it."""
        if spec.promote is None:
            return None
        alias = self.registry.aliases.find(spec.model, spec.promote.alias)
        if alias is None:
            return None
        record = self.registry.models.get_version(spec.model, alias.version)
        if record.state is not VersionState.READY:
            return {"version": record.version, "error": f"version {record.version} is {record.state.value}"}
        trained_on = record.metadata.get("lineage", {}).get("features")
        if trained_on is not None and trained_on != features:
            # same width, other columns or order: it would be scored on the wrong inputs
            return {
                "version": record.version,
                "error": f"it was trained on other features: {trained_on[:10]}",
            }
        files = self.repository.materialise(record)
        target = workdir / "champion"
        shutil.move(files, target)
        return {
            "dir": str(target),
            "framework": record.framework,
            "version": record.version,
            "classes": record.metadata.get("classes"),
        }

    def _supervise(self, job: JobRecord, workdir: Path, wall: int) -> tuple[JobState, str] | None:
        """Run the job's process to its end; None when it succeeded, else the state and reason."""
        process = launch(workdir, self.limits.threads)
        with self._lock:
            self._running[job.id] = process
        relay = Relay(process.stdout)  # type: ignore[arg-type]
        started, cancelled, timed_out = time.monotonic(), False, False
        try:
            while True:
                try:
                    process.wait(timeout=self.limits.heartbeat_interval)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if self._heartbeat(job, relay) or self._stop.is_set():
                    cancelled = True
                    kill(process)
                elif time.monotonic() - started > wall:
                    timed_out = True
                    kill(process)
        finally:
            if process.poll() is None:  # the registry failed us: never leave the process unwatched
                kill(process)
                process.wait()
            with self._lock:
                self._running.pop(job.id, None)
        relay.join()
        self._heartbeat(job, relay)
        if self._stop.is_set():
            return JobState.FAILED, "interrupted: the server stopped while the job ran"
        if cancelled or self.registry.jobs.get(job.id).cancel_requested:
            return JobState.CANCELLED, "cancelled by request"
        if timed_out:
            return JobState.FAILED, f"the job ran past its wall-clock limit of {wall} s"
        if process.returncode == 0 and (workdir / "result.json").exists():
            return None
        return JobState.FAILED, failure(process.returncode, workdir, self.scratch)

    def _heartbeat(self, job: JobRecord, relay: Relay) -> bool:
        progress, step, metrics, events = relay.take()
        return self.registry.jobs.heartbeat(
            job.id, self.owner, progress=progress, step=step, metrics=metrics, events=events
        )

    def _publish(
        self,
        job: JobRecord,
        spec: JobSpec,
        result: dict[str, Any],
        workdir: Path,
        champion: dict[str, Any] | None,
    ) -> None:
        artifact = workdir / "out" / Path(result["artifact"]).name
        lineage = {
            "job": job.id,
            "dataset": job.spec["dataset"],
            "estimator": spec.estimator,
            "task": job.spec["task"],
            "target": spec.target,
            "features": job.spec["features"],
            "params": result["params"],
            "validation": spec.validation.model_dump(mode="json"),
            "metric": job.spec["metric"],
            "metrics": result["metrics"],
            "search": None if result.get("search") is None else _search_summary(result["search"]),
            "libraries": result["libraries"],
            "started_by": job.created_by,
        }
        metadata = {"lineage": lineage, "classes": result.get("classes"), "profile": result.get("profile")}
        record = self.repository.push_bytes(
            spec.model, _chunks(artifact), by=job.created_by, filename=artifact.name, metadata=metadata
        )
        summary = {
            "version": record.version,
            "metric": job.spec["metric"],
            "score": result["score"],
            "metrics": result["metrics"],
            "params": result["params"],
            "rows": result.get("rows"),
            "search": lineage["search"],
        }
        if record.state is not VersionState.READY:
            self._finish(
                job, JobState.FAILED, error=f"the trained model failed its load check: {record.error}",
                result=summary, version=record.version,
            )  # fmt: skip
            return
        if spec.promote is not None:
            decision = decide(self.registry, self.repository, job, spec, result, champion, record.version)
            summary["decision"] = decision
            if decision["promoted"]:
                try:
                    self.on_promoted()
                except Exception:  # serving catches up through its reconcile loop anyway
                    log.exception("reconcile after the promotion of job %s", job.id)
        self._finish(job, JobState.SUCCEEDED, result=summary, version=record.version)

    def _finish(
        self,
        job: JobRecord,
        state: JobState,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        version: int | None = None,
    ) -> None:
        ended = self.registry.jobs.finish(
            job.id, self.owner, state, error=error, result=result, version=version
        )
        if ended is None:
            return  # declared interrupted meanwhile: the first word stands
        details: dict[str, Any] = {"state": state.value, "model": job.model}
        if version is not None:
            details["version"] = version
        if error:
            details["error"] = error[:300]
        self.registry.audit.record(
            actor=job.created_by, action="job.finish", target=f"job/{job.id}",
            result="ok" if state is JobState.SUCCEEDED else state.value, details=details,
        )  # fmt: skip


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def _dataset_ref(job: JobRecord) -> str:
    return job.dataset if job.dataset_version is None else f"{job.dataset}:{job.dataset_version}"


def _search_summary(search: dict[str, Any]) -> dict[str, Any]:
    return {k: search[k] for k in ("kind", "best_params", "best_score") if k in search} | {
        "trials": len(search.get("trials", []))
    }
