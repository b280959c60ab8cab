"""Run a runtime in a worker process of its own, for runtimes that hold the GIL while they compute.

The child imports the runtime class by name (``spawn``: nothing of the server's state is inherited),
loads the version's directory and answers ``predict`` calls sent over a pipe. Errors come back as their
class and message and are raised again in the server, so callers see the same errors either way.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import shutil
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

from modelport.errors import ERRORS_BY_CODE, LoadError, ModelportError
from modelport.runtimes.base import (
    Capabilities,
    LoadOptions,
    MemoryUse,
    Placement,
    Runtime,
    Signature,
    Tensors,
)
from modelport.runtimes.sandbox import SandboxLimits, confine, end_load_cpu_limit, preload
from modelport.serving.memory import rss_bytes

START_TIMEOUT = 120.0


def _child(
    conn: Connection,
    module: str,
    qualname: str,
    artifact_dir: str,
    options: LoadOptions,
    sandbox: SandboxLimits | None,
) -> None:
    original = path = Path(artifact_dir)
    try:
        try:
            cls = getattr(importlib.import_module(module), qualname)
            if sandbox is not None:
                preload(cls.capabilities.preload)
                path = confine(path, sandbox)
            runtime = cls()
            runtime.load(path, options)
            if sandbox is not None:
                end_load_cpu_limit()
            conn.send(("ok", runtime.signature().as_dict()))
        except BaseException as exc:
            conn.send(("error", *_describe(exc)))
            return
        _serve(conn, runtime)
    finally:
        if path != original:  # the sandbox's private copy of the artifact goes with the worker
            shutil.rmtree(path.parent, ignore_errors=True)


def _serve(conn: Connection, runtime: Runtime) -> None:
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] == "stop":
            runtime.unload()
            return
        try:
            conn.send(("ok", runtime.predict(message[1], message[2])))
        except BaseException as exc:
            conn.send(("error", *_describe(exc)))


def _describe(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, ModelportError):
        return exc.code, exc.message
    return type(exc).__name__, str(exc)[:500]


def _rebuild(kind: str, message: str) -> Exception:
    if kind in ERRORS_BY_CODE:
        return ERRORS_BY_CODE[kind](message)
    if kind == "ValueError":
        return ValueError(message)
    return RuntimeError(f"{kind}: {message}")


class ProcessRuntime:
    """A ``Runtime`` whose real runtime lives in a child process."""

    framework: ClassVar[str] = "process"
    capabilities: ClassVar[Capabilities] = Capabilities(placement=Placement.PROCESS)

    def __init__(self, runtime: type[Runtime], sandbox: SandboxLimits | None = None) -> None:
        self._target = runtime
        self._sandbox = sandbox
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._signature: Signature | None = None
        self._lock = threading.Lock()  # one call on the pipe at a time

    @classmethod
    def recognise(cls, path: Path) -> bool:
        return False

    @classmethod
    def vet(cls, artifact_dir: Path, options: LoadOptions) -> None:
        return None  # the wrapped runtime's own ``vet`` runs at push

    def loaded_capabilities(self) -> Capabilities:
        return self._target.capabilities

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def load(self, artifact_dir: Path, options: LoadOptions) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        target = self._target
        self._process = ctx.Process(
            target=_child,
            args=(child, target.__module__, target.__qualname__, str(artifact_dir), options, self._sandbox),
            name=f"modelport-{target.framework}",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._conn = parent
        if not parent.poll(START_TIMEOUT):
            self.unload()
            raise LoadError(f"the {target.framework} worker process did not start in time")
        reply = parent.recv()
        if reply[0] != "ok":
            self.unload()
            raise LoadError(f"{target.framework} could not load the model: {reply[2]}")
        self._signature = Signature.from_dict(reply[1])

    def signature(self) -> Signature:
        assert self._signature is not None, "load() first"
        return self._signature

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        if self._conn is None:
            raise LoadError("the worker process is not running")
        with self._lock:
            try:
                self._conn.send(("predict", inputs, list(outputs) if outputs is not None else None))
                reply: tuple[Any, ...] = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                raise LoadError("the model's worker process died") from None
        if reply[0] == "ok":
            return reply[1]  # type: ignore[no-any-return]
        raise _rebuild(reply[1], reply[2])

    def memory(self) -> MemoryUse:
        """The worker's resident memory: it is not part of the server process's own growth."""
        pid = self.pid
        return MemoryUse(host=rss_bytes(pid) if pid is not None else 0)

    def unload(self) -> None:
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(("stop",))
            conn.close()
        if process is not None:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
