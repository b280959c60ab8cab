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

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from modelport.datasets.service import DatasetService
from modelport.errors import ModelportError
from modelport.jobs.spec import JobSpec, improvement
from modelport.jobs.submission import prepare
from modelport.registry import Registry, VersionState
from modelport.registry.db import utcnow
from modelport.registry.jobs import JobRecord, JobState
from modelport.repository import ModelRepository

log = logging.getLogger("modelport.jobs")
MAX_EVENT_BYTES = 2000  # a log line longer than this is cut
MAX_LOG_EVENTS = 1000  # per job; later ones are counted, not stored


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
        self._running: dict[int, subprocess.Popen[bytes]] = {}
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
            _kill(process)
        return record

    # ---- the loop -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="modelport-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop claiming; kill this process's jobs (they end as interrupted)."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            running = list(self._running.values())
        for process in running:
            _kill(process)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # a registry hiccup must not end the loop
                log.exception("job loop")
            self._wake.wait(self.limits.poll_interval)
            self._wake.clear()

    def _tick(self) -> None:
        stale = utcnow() - timedelta(seconds=self.limits.stale_after)
        for interrupted in self.registry.jobs.interrupt(stale_before=stale):
            log.warning("job %s was interrupted (its server stopped heart-beating)", interrupted.id)
        while not self._stop.is_set():
            job = self.registry.jobs.claim(self.owner, self.limits.max_running)
            if job is None:
                return
            threading.Thread(
                target=self._run, args=(job,), name=f"modelport-job-{job.id}", daemon=True
            ).start()

    # ---- one job ------------------------------------------------------------------------------
    def _run(self, job: JobRecord) -> None:
        workdir = self.scratch / f"job-{job.id}-{secrets.token_hex(4)}"
        workdir.mkdir(parents=True)
        try:
            self._execute(job, workdir)
        except Exception as exc:
            message = exc.message if isinstance(exc, ModelportError) else f"{type(exc).__name__}: {exc}"
            log.exception("job %s failed", job.id)
            self._finish(job, JobState.FAILED, error=message[:1000])
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

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
        env = {**os.environ, **{v: str(self.limits.threads) for v in THREAD_VARIABLES}}
        with (workdir / "stderr.txt").open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "modelport.jobs.worker", str(workdir)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                env=env,
                start_new_session=True,  # its own process group: killing it kills what it started
            )
        with self._lock:
            self._running[job.id] = process
        relay = _Relay(process.stdout)  # type: ignore[arg-type]
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
                    _kill(process)
                elif time.monotonic() - started > wall:
                    timed_out = True
                    _kill(process)
        finally:
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
        return JobState.FAILED, _failure(process.returncode, workdir)

    def _heartbeat(self, job: JobRecord, relay: _Relay) -> bool:
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
        upload = self.repository.begin_upload()
        try:
            with artifact.open("rb") as f:
                while chunk := f.read(1 << 20):
                    upload.write(chunk)
        except BaseException:
            upload.discard()
            raise
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
        record = self.repository.push(
            spec.model, upload, by=job.created_by, filename=artifact.name, metadata=metadata
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
            summary["decision"] = self._decide(job, spec, result, champion, record.version)
        self._finish(job, JobState.SUCCEEDED, result=summary, version=record.version)

    def _decide(
        self,
        job: JobRecord,
        spec: JobSpec,
        result: dict[str, Any],
        champion: dict[str, Any] | None,
        version: int,
    ) -> dict[str, Any]:
        """Champion/challenger: move the alias only if the new version wins on the same holdout by the
        margin, and only if the alias still serves the champion that was scored."""
        promote = spec.promote
        assert promote is not None
        metric = promote.metric or job.spec["metric"]
        challenger = result["challenger"]["metrics"][metric]
        decision: dict[str, Any] = {
            "alias": promote.alias,
            "metric": metric,
            "min_improvement": promote.min_improvement,
            "challenger": {"version": version, "score": challenger},
            "champion": None,
            "promoted": False,
        }
        scored = result.get("champion")
        current = self.registry.aliases.find(spec.model, promote.alias)
        if champion is None:
            decision["reason"] = "no champion: the alias did not exist"
            decision["promoted"] = current is None
            if current is not None:
                decision["reason"] = f"the alias was set to version {current.version} while the job ran"
        elif scored is None or "error" in scored:
            error = (scored or champion).get("error", "it was not scored")
            decision["champion"] = {"version": champion["version"], "error": error}
            decision["reason"] = f"the champion could not be scored: {error}"
        else:
            champion_score = scored["metrics"][metric]
            gain = improvement(metric, challenger, champion_score)
            decision["champion"] = {"version": champion["version"], "score": champion_score}
            decision["improvement"] = gain
            if current is None or current.version != champion["version"]:
                decision["reason"] = "the alias moved while the job ran"
            elif gain > 0 and gain >= promote.min_improvement:
                decision["promoted"], decision["reason"] = True, "the challenger won by the margin"
            else:
                decision["reason"] = "the challenger did not win by the margin"
        if decision["promoted"]:
            self.repository.promote(spec.model, promote.alias, version, by=job.created_by)
            self.on_promoted()
        self.registry.audit.record(
            actor=job.created_by,
            action="job.promote",
            target=f"{spec.model}@{promote.alias}",
            result="ok" if decision["promoted"] else "kept",
            details={"job": job.id, **decision},
        )
        self.registry.jobs.add_event(job.id, "decision", decision)
        return decision

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


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class _Relay:
    """Reads the job's JSON-line events on a thread of its own; ``take`` hands over what came since."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._lock = threading.Lock()
        self._progress: float | None = None
        self._step: str | None = None
        self._metrics: dict[str, Any] | None = None
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._logs = 0
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"kind": "log", "message": line.decode(errors="replace").strip()}
            if not isinstance(event, dict):
                continue
            with self._lock:
                self._take_in(event)
        stream.close()

    def _take_in(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "progress":
            self._progress = float(event.get("progress") or 0.0)
            self._step = str(event.get("step") or "")[:256]
            if isinstance(event.get("metrics"), dict):
                self._metrics = event["metrics"]
            data: dict[str, Any] = {k: event[k] for k in ("progress", "step", "metrics") if k in event}
        elif kind == "log":
            self._logs += 1
            if self._logs > MAX_LOG_EVENTS:
                return
            data = {"message": str(event.get("message", ""))[:MAX_EVENT_BYTES]}
        else:
            return
        if len(json.dumps(data)) <= 4 * MAX_EVENT_BYTES:
            self._events.append((kind, data))

    def take(
        self,
    ) -> tuple[float | None, str | None, dict[str, Any] | None, list[tuple[str, dict[str, Any]]]]:
        with self._lock:
            events, self._events = self._events, []
            if self._logs > MAX_LOG_EVENTS:
                events.append(("log", {"message": f"{self._logs - MAX_LOG_EVENTS} more log lines left out"}))
                self._logs = MAX_LOG_EVENTS
            return self._progress, self._step, self._metrics, events

    def join(self) -> None:
        self._thread.join(timeout=5)


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _failure(returncode: int, workdir: Path) -> str:
    """Why the job's process failed, in words: its own report, or what the exit status says."""
    report = workdir / "error.json"
    if report.exists():
        try:
            error = json.loads(report.read_text())
        except ValueError:
            error = {}
        if error.get("reason") == "memory_limit":
            memory = json.loads((workdir / "job.json").read_text())["limits"]["memory_bytes"]
            return f"memory_limit: the job exceeded its memory limit of {memory >> 20} MiB"
        if error.get("message"):
            return f"{error.get('reason', 'error')}: {error['message']}"[:1000]
    if returncode == -signal.SIGXCPU:
        return "cpu_limit: the job used up its CPU-time limit"
    if returncode < 0:  # SIGKILL from the kernel: out of memory, or past the CPU-time hard limit
        return f"the job's process was killed by signal {signal.Signals(-returncode).name}"
    tail = (workdir / "stderr.txt").read_bytes()[-500:].decode(errors="replace").strip()
    return f"the job's process exited with status {returncode}" + (f": {tail}" if tail else "")


def _dataset_ref(job: JobRecord) -> str:
    return job.dataset if job.dataset_version is None else f"{job.dataset}:{job.dataset_version}"


def _search_summary(search: dict[str, Any]) -> dict[str, Any]:
    return {k: search[k] for k in ("kind", "best_params", "best_score") if k in search} | {
        "trials": len(search.get("trials", []))
    }
