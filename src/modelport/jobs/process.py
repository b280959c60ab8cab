"""A job's process: launched with a minimal environment in a process group of its own, its JSON-line
events relayed on a thread, killed as a group, and its failure told in words."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

MAX_EVENT_BYTES = 2000  # a log line longer than this is cut
MAX_LOG_EVENTS = 1000  # per job; later ones are counted, not stored
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# what a job's process may see of the server's environment: none of its secrets (MODELPORT_*)
PASSED_ON = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "SYSTEMROOT")


def launch(workdir: Path, threads: int) -> subprocess.Popen[bytes]:
    env = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    env |= {name: str(threads) for name in THREAD_VARIABLES}
    env |= {"HOME": str(workdir), "TMPDIR": str(workdir), "PYTHONDONTWRITEBYTECODE": "1"}
    with (workdir / "stderr.txt").open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "modelport.jobs.worker", str(workdir)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env=env,
            start_new_session=True,  # its own process group: killing it kills what it started
        )


def kill(process: subprocess.Popen[bytes]) -> None:
    """The job's whole process group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class Relay:
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


def failure(returncode: int, workdir: Path, scratch: Path) -> str:
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
    tail = tail.replace(str(scratch), "<scratch>")
    return f"the job's process exited with status {returncode}" + (f": {tail}" if tail else "")
