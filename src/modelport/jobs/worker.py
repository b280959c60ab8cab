"""A training job's process: ``python -m modelport.jobs.worker WORKDIR``.

Reads ``WORKDIR/job.json``, confines itself to the limits it names, trains, writes the artifact into
``WORKDIR/out/`` and then ``WORKDIR/result.json``. Events go to stdout as JSON lines, one per line and
flushed; anything else that would reach stdout (a print, a native library's chatter) goes to stderr.
On failure it writes ``WORKDIR/error.json`` (``reason``, ``message``; no traceback) and exits 1, or 3
when the job ran out of memory.

Only the standard library is imported before the job's limits are in place; the frameworks come after.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import IO, Any

EXIT_FAILED = 1
EXIT_MEMORY = 3
# how an allocation refused under RLIMIT_DATA reads when it is not a Python MemoryError
OUT_OF_MEMORY = ("bad_alloc", "cannot map zero-fill pages", "failed to map segment", "Cannot allocate memory")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m modelport.jobs.worker WORKDIR", file=sys.stderr)
        return 2
    workdir = Path(argv[0]).resolve()
    events = _claim_stdout()
    try:
        job = json.loads((workdir / "job.json").read_text())
        limits = job.get("limits")
        if limits:
            from modelport.jobs.confine import confine

            confine(int(limits["memory_bytes"]), int(limits["cpu_seconds"]), int(limits["parent_pid"]))
        from modelport.jobs.training import TrainingError, run

        def emit(event: dict[str, Any]) -> None:
            events.write(json.dumps(event, default=_plain) + "\n")
            events.flush()

        try:
            result = run(job, workdir / "out", emit)
        except TrainingError as exc:
            _write(workdir / "error.json", {"reason": exc.reason, "message": exc.message})
            return EXIT_FAILED
        _write(workdir / "result.json", result)
        return 0
    except MemoryError:
        _fail(workdir, "memory_limit", "the job ran out of memory")
        return EXIT_MEMORY
    except Exception as exc:
        text = _short(exc, workdir)
        if any(sign in text for sign in OUT_OF_MEMORY):  # native code or a library's load hit the limit
            _fail(workdir, "memory_limit", "the job ran out of memory")
            return EXIT_MEMORY
        traceback.print_exc(file=sys.stderr)  # for the server's log; error.json stays path-free
        _fail(workdir, "error", f"{type(exc).__name__}: {text}")
        return EXIT_FAILED


def _claim_stdout() -> IO[str]:
    """A private copy of stdout for the events; file descriptor 1 then points at stderr, so that native
    code (LightGBM, XGBoost) writing to it cannot break the JSON lines."""
    events = os.fdopen(os.dup(1), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return events


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write whole or not at all: the server reads the file once the process has ended."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, default=_plain, allow_nan=False))
    os.replace(temporary, path)


def _fail(workdir: Path, reason: str, message: str) -> None:
    with contextlib.suppress(OSError, MemoryError):  # the exit status still says it failed
        _write(workdir / "error.json", {"reason": reason, "message": message})


def _short(exc: BaseException, workdir: Path) -> str:
    """An exception's first line, at most 300 characters, without the job's paths."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text.replace(str(workdir), "<job>")[:300]


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
