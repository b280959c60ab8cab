"""The model repository: push, check, load, promote, roll back and delete versions.

Ordering that keeps a crash harmless: bytes go to the store first (temp name, then rename), the version
row is committed after them, so a crash leaves at worst blobs no row references, which ``recover`` sweeps.
A row is committed ``pending`` and moved to ``ready`` or ``failed`` once the load check has run; a
``pending`` row found at start-up had its check interrupted and is checked again.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from modelport.errors import (
    InvalidInput,
    LoadError,
    ModelportError,
    NotReady,
    PayloadTooLarge,
    StorageFull,
)
from modelport.names import check_name
from modelport.registry import AliasRecord, Registry, VersionRecord, VersionState
from modelport.registry.aliases import ANYWHERE
from modelport.registry.records import FileEntry
from modelport.runtimes.base import Capabilities, LoadOptions, Placement, Runtime, Signature, is_cuda
from modelport.runtimes.catalog import RuntimeCatalog
from modelport.runtimes.devices import Hardware
from modelport.runtimes.process import ProcessRuntime
from modelport.runtimes.sandbox import SandboxLimits
from modelport.storage.archive import extract_tar, extract_zip, safe_member_path
from modelport.storage.base import ArtifactStore, sha256_file
from modelport.storage.sniff import UploadKind, classify_upload, refuse_unsafe

FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
ORPHAN_PAGE = 1000  # digests checked per registry query when sweeping the store


@contextmanager
def storage_errors() -> Iterator[None]:
    """A full disk is a clean, documented error (507), not an internal one."""
    try:
        yield
    except OSError as exc:
        if exc.errno in FULL_DISK:
            raise StorageFull("not enough storage space to keep the artifact; nothing was stored") from None
        raise


@dataclass(frozen=True)
class Limits:
    """The repository's bounds, from the server settings (their defaults are defined there, once)."""

    max_upload_bytes: int
    archive_max_entries: int
    archive_max_bytes: int
    max_concurrent_loads: int
    allow_pickle: bool
    sandbox: SandboxLimits
    hardware: Hardware = field(default_factory=Hardware)


class Upload:
    """An artifact (or dataset) being received: written to a private temp file while its sha256 is
    computed."""

    def __init__(self, directory: Path, max_bytes: int, what: str = "artifact") -> None:
        fd, name = tempfile.mkstemp(prefix="upload-", dir=directory)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self._max = max_bytes
        self._what = what
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max:
            raise PayloadTooLarge(f"{self._what} exceeds the upload limit of {self._max} bytes")
        self._digest.update(chunk)
        with storage_errors():
            self._file.write(chunk)

    def finish(self) -> str:
        with storage_errors():
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        return self._digest.hexdigest()

    def discard(self) -> None:
        with suppress(OSError):  # closing flushes; a full disk must not hide the first error
            self._file.close()
        self.path.unlink(missing_ok=True)


@dataclass
class LoadedVersion:
    record: VersionRecord
    runtime: Runtime
    signature: Signature
    workdir: Path
    capabilities: (
        Capabilities  # the loaded version's (``runtime`` may be a process wrapper: then its class's)
    )
    options: LoadOptions

    def close(self) -> None:
        try:
            self.runtime.unload()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


class ModelRepository:
    def __init__(
        self,
        registry: Registry,
        store: ArtifactStore,
        runtimes: RuntimeCatalog,
        scratch_dir: Path,
        limits: Limits,
    ) -> None:
        self.registry = registry
        self.store = store
        self.runtimes = runtimes
        self.scratch = scratch_dir
        self.limits = limits
        self._loading = threading.BoundedSemaphore(self.limits.max_concurrent_loads)
        scratch_dir.mkdir(parents=True, exist_ok=True)

    # ---- push ---------------------------------------------------------------------------------
    def begin_upload(self) -> Upload:
        return Upload(self.scratch, self.limits.max_upload_bytes)

    def push_bytes(self, model: str, chunks: Iterable[bytes], *, by: str, **kwargs: Any) -> VersionRecord:
        upload = self.begin_upload()
        try:
            for chunk in chunks:
                upload.write(chunk)
        except BaseException:
            upload.discard()
            raise
        return self.push(model, upload, by=by, **kwargs)

    def push(
        self,
        model: str,
        upload: Upload,
        *,
        by: str,
        framework: str | None = None,
        filename: str | None = None,
        config: dict[str, Any] | None = None,
        task: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> VersionRecord:
        """Store an uploaded artifact as the model's next version, then check that it loads.
        ``task``: what a multi-task framework's model does (e.g. ``feature-extraction``), kept in the
        version's metadata; the runtime detects it when it is not given. ``metadata``: facts stored with
        the version from the start (a training job's lineage)."""
        staging = Path(tempfile.mkdtemp(prefix="stage-", dir=self.scratch))
        created: list[str] = []  # blobs this push added: removed again if it fails before its row exists
        pin: str | None = None
        try:
            with storage_errors():
                check_name(model, field="model")
                digest = upload.finish()
                config = config or {}
                vetting = LoadOptions(
                    dtype=config.get("dtype"), task=task, settings=config.get("runtime", {})
                )
                manifest, detected = self._stage(upload, staging, framework, filename, vetting)
                self.registry.models.ensure_model(model, by=by)
                # pinned before the store is looked at: a concurrent delete (any process, any host)
                # cannot collect a blob this push is about to reuse
                pin = self.registry.blobs.pin(e.sha256 for e in manifest)
                for entry in manifest:
                    if not self.store.exists(entry.sha256):
                        created.append(entry.sha256)
                    self.store.put(staging / entry.path, entry.sha256)
                record = self.registry.models.add_version(
                    model,
                    sha256=digest,
                    size=upload.size,
                    manifest=manifest,
                    framework=detected,
                    by=by,
                    config=config,
                    metadata={**(metadata or {}), **({"task": task} if task else {})} or None,
                )
                self.registry.blobs.unpin(pin)  # the version's files reference the blobs now
        except BaseException as exc:
            if pin is not None:
                self.registry.blobs.unpin(pin)
            self.registry.blobs.collect(created, self.store.delete)
            if isinstance(exc, ModelportError):
                self.registry.audit.record(
                    actor=by,
                    action="version.push",
                    target=model,
                    result="refused",
                    details={"error": exc.code},
                )
            raise
        finally:
            upload.discard()
            shutil.rmtree(staging, ignore_errors=True)
        record = self.check(record)
        self.registry.audit.record(
            actor=by,
            action="version.push",
            target=f"{model}/{record.version}",
            details={"sha256": digest, "state": record.state.value, "framework": detected},
        )
        return record

    def _stage(
        self, upload: Upload, staging: Path, framework: str | None, filename: str | None, vetting: LoadOptions
    ) -> tuple[list[FileEntry], str]:
        limits = self.limits
        whole_file_model = any(rt.recognise(upload.path) for rt in self.runtimes.runtimes.values())
        kind = classify_upload(upload.path, whole_file_model, allow_pickle=limits.allow_pickle)
        if kind is UploadKind.ZIP:
            extract_zip(
                upload.path,
                staging,
                max_entries=limits.archive_max_entries,
                max_bytes=limits.archive_max_bytes,
            )
        elif kind is UploadKind.TAR:
            extract_tar(
                upload.path,
                staging,
                max_entries=limits.archive_max_entries,
                max_bytes=limits.archive_max_bytes,
            )
        else:
            os.replace(upload.path, staging / safe_file_name(filename))
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        if not limits.allow_pickle:
            for path in files:
                refuse_unsafe(path, display=f"file {path.relative_to(staging).as_posix()!r}")
        detected = self.runtimes.detect(staging, framework)
        try:  # refusals before anything is stored
            self.runtimes.get(detected).vet(staging, vetting)
        except ModelportError as exc:
            exc.message = self._scrubbed(exc.message, staging)
            raise
        except Exception as exc:  # a framework's own error while reading the artifact
            reason = self._scrubbed(str(exc)[:300], staging)
            raise InvalidInput(
                f"the {detected} model cannot be read: {type(exc).__name__}: {reason}"
            ) from None
        manifest = []
        for path in files:
            sha, size = sha256_file(path)
            manifest.append(FileEntry(path.relative_to(staging).as_posix(), sha, size))
        return manifest, detected

    # ---- check and load -----------------------------------------------------------------------
    def check(self, record: VersionRecord) -> VersionRecord:
        """Load the version once, where it will be served, and run a dummy batch; record ``ready`` with
        its signature or ``failed`` with the reason."""
        try:
            loaded = self.load(record, require_ready=False)
        except ModelportError as exc:
            return self._fail(record, exc.message)
        try:
            smoke_test(loaded)
        except ModelportError as exc:
            return self._fail(record, f"a test batch failed: {exc.message}")
        except Exception as exc:  # a framework's own error type: record it, never crash the push
            return self._fail(record, f"a test batch failed: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            loaded.close()
        return self.registry.models.set_version_state(
            record.model, record.version, VersionState.READY, signature=loaded.signature.as_dict()
        )

    def mark_failed(self, record: VersionRecord, reason: str) -> VersionRecord:
        """A version that cannot be served here (e.g. no room on its device): failed, with the reason."""
        return self._fail(record, reason)

    def _fail(self, record: VersionRecord, reason: str) -> VersionRecord:
        return self.registry.models.set_version_state(
            record.model, record.version, VersionState.FAILED, error=reason
        )

    def options_for(self, record: VersionRecord) -> LoadOptions:
        """Device, dtype, task and threads for loading ``record``, from its config and this server."""
        if record.framework is None:
            raise LoadError("the version has no framework")
        capabilities = self.runtimes.get(record.framework).capabilities
        what = f"version {record.version} of {record.model!r}"
        return self.limits.hardware.options(record.config, record.metadata.get("task"), capabilities, what)

    def load(
        self, record: VersionRecord, *, require_ready: bool = True, options: LoadOptions | None = None
    ) -> LoadedVersion:
        """Materialise the version's files (sha256 verified) into a private directory and load them
        where the runtime declares it must run: in this process, a worker process or a sandbox."""
        if require_ready and record.state is not VersionState.READY:
            raise NotReady(f"version {record.version} of {record.model!r} is {record.state.value}")
        if record.framework is None:
            raise LoadError("the version has no framework")
        options = options or self.options_for(record)
        with self._loading:  # loads are memory- and CPU-heavy: only a few at once
            return self._load(record, record.framework, options)

    def materialise(self, record: VersionRecord) -> Path:
        """The version's files, sha256 verified, in a private directory of their own."""
        workdir = Path(tempfile.mkdtemp(prefix="load-", dir=self.scratch))
        try:
            for entry in record.manifest:
                dest = workdir.joinpath(*safe_member_path(entry.path).parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.store.fetch(entry.sha256, dest)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return workdir

    def _scrubbed(self, message: str, workdir: Path) -> str:
        """Framework messages often quote the artifact's absolute path; callers must not see it."""
        return message.replace(f"{workdir}/", "").replace(str(self.scratch), "<scratch>")

    def check_config(self, record: VersionRecord, config: dict[str, Any]) -> None:
        """A new device the runtime cannot use, or runtime settings its runtime refuses (it vets the
        stored files with them), are a 400 now rather than a failed load later."""
        if record.framework is None:
            return
        runtime = self.runtimes.get(record.framework)
        device, declared = str(config.get("device", "auto")), runtime.capabilities.devices
        if (is_cuda(device) and not any(is_cuda(d) for d in declared)) or (
            device == "cpu" and "cpu" not in declared
        ):
            raise InvalidInput(
                f"the {record.framework} runtime runs on {', '.join(declared)}, not {device!r}",
                field="device",
            )
        settings, dtype = config.get("runtime") or {}, config.get("dtype")
        if settings == (record.config.get("runtime") or {}) and dtype == record.config.get("dtype"):
            return
        workdir = self.materialise(record)
        try:
            task = record.metadata.get("task")
            runtime.vet(workdir, LoadOptions(dtype=dtype, task=task, settings=settings))
        except ModelportError as exc:
            exc.message = self._scrubbed(exc.message, workdir)
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _load(self, record: VersionRecord, framework: str, options: LoadOptions) -> LoadedVersion:
        workdir = self.materialise(record)
        try:
            runtime_cls = self.runtimes.get(framework)
            capabilities = runtime_cls.capabilities
            runtime: Runtime
            if capabilities.placement is Placement.SANDBOX:
                runtime = ProcessRuntime(runtime_cls, self.limits.sandbox)
            elif capabilities.placement is Placement.PROCESS:
                runtime = ProcessRuntime(runtime_cls)
            else:
                runtime = runtime_cls()
            try:
                runtime.load(workdir, options)
            except ModelportError as exc:
                # framework messages often quote the file's absolute path; callers must not see it
                exc.message = self._scrubbed(exc.message, workdir)
                raise
            except Exception as exc:
                raise LoadError(f"{framework} could not load the model: {type(exc).__name__}") from None
            if capabilities.placement is Placement.THREAD:
                capabilities = runtime.loaded_capabilities()
            return LoadedVersion(record, runtime, runtime.signature(), workdir, capabilities, options)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    # ---- aliases ------------------------------------------------------------------------------
    def promote(
        self, model: str, alias: str, version: int, *, by: str, expected: int | None = ANYWHERE
    ) -> AliasRecord:
        """``expected``: move it only from that version (None: only create it); see ``Aliases.set``."""
        check_name(alias, field="alias")
        record = self.registry.aliases.set(model, alias, version, by=by, expected=expected)
        self.registry.audit.record(
            actor=by, action="alias.set", target=f"{model}@{alias}", details={"version": version}
        )
        return record

    def rollback(self, model: str, alias: str, *, by: str) -> AliasRecord:
        record = self.registry.aliases.rollback(model, alias, by=by)
        self.registry.audit.record(
            actor=by, action="alias.rollback", target=f"{model}@{alias}", details={"version": record.version}
        )
        return record

    # ---- delete -------------------------------------------------------------------------------
    def delete_version(self, model: str, version: int, *, by: str) -> VersionRecord:
        record = self.registry.models.delete_version(model, version)
        self._collect(record.manifest)
        self.registry.audit.record(actor=by, action="version.delete", target=f"{model}/{version}")
        return record

    def delete_model(self, model: str, *, by: str) -> None:
        removed = self.registry.models.delete_model(model)
        self._collect(entry for record in removed for entry in record.manifest)
        self.registry.audit.record(
            actor=by, action="model.delete", target=model, details={"versions": [r.version for r in removed]}
        )

    def _collect(self, entries: Iterable[FileEntry]) -> None:
        """Delete blobs no remaining version references (blobs are shared by content)."""
        self.registry.blobs.collect({e.sha256 for e in entries}, self.store.delete)

    # ---- start-up recovery --------------------------------------------------------------------
    def recover(self, *, sole_writer: bool) -> dict[str, int]:
        """After a crash: drop scratch files, blobs no version references, and re-check pending versions.

        ``sole_writer``: no other process can be pushing now (a single host starting up), so the pins of
        pushes that died with the last run are dropped too; otherwise they are left to expire."""
        if sole_writer:
            self.registry.blobs.clear_pins()
        for leftover in self.scratch.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        orphans = 0
        after: str | None = None
        while page := self.store.digests(after=after, limit=ORPHAN_PAGE):
            orphans += len(self.registry.blobs.collect(page, self.store.delete))
            after = page[-1]
        pending = self.registry.models.pending_versions()
        for record in pending:
            self.check(record)
        return {"orphans": orphans, "rechecked": len(pending)}


def safe_file_name(filename: str | None) -> str:
    """The base name of a client's file name, usable on any filesystem: no directories, no control
    characters, at most 200 bytes of UTF-8; ``model`` when nothing usable is left."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable())
    while len(name.encode()) > 200:
        name = name[:-1]
    return name if name not in ("", ".", "..") else "model"


def smoke_test(loaded: LoadedVersion) -> None:
    """One all-zeros row (a short text for BYTES) through the model, so that a version that cannot predict
    never becomes ready, and the first request does not pay for the framework's warm-up."""
    from modelport.serving.datatypes import numpy_dtype

    inputs = {}
    for spec in loaded.signature.inputs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        if spec.datatype == "BYTES":
            inputs[spec.name] = np.full(shape, b"warm-up", dtype=object)  # a short text
        else:
            inputs[spec.name] = np.zeros(shape, dtype=numpy_dtype(spec.datatype))
    loaded.runtime.predict(inputs)
