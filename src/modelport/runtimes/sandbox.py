"""Confinement of a model worker process before it loads an untrusted artifact.

Applied in the child, before the load: the version's files are copied to a private temporary directory
that becomes the working and temp directory; resource limits cap memory, CPU seconds of the load and
open files; and when the server runs as root, the child switches to the unprivileged ``nobody`` user, so
the data directory (mode 0700) and the rest of the server's files are out of its reach. Running the server
as a non-root user keeps the limits but not the user switch: the child can then read what that user can.
"""

from __future__ import annotations

import importlib
import os
import resource
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

SANDBOX_ENV = "MODELPORT_SANDBOX"
PRELOAD = ("json", "pickle", "joblib", "numpy", "scipy", "sklearn", "encodings.idna", "decimal", "fractions")
NOBODY = 65534


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int  # the server settings hold the defaults
    load_cpu_seconds: int
    open_files: int = 256


def preload(modules: tuple[str, ...]) -> None:
    """Import what loading will need while the files are still readable: once switched to ``nobody``,
    the child may not read the Python installation (e.g. one under /root)."""
    for name in (*PRELOAD, *modules):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    try:  # every scikit-learn estimator's module, since a pickle may name any of them
        from sklearn.utils.discovery import all_estimators

        all_estimators()
    except ImportError:
        pass


def confine(artifact_dir: Path, limits: SandboxLimits) -> Path:
    """Confine this process; returns the private copy of the artifact to load from."""
    private = Path(tempfile.mkdtemp(prefix="modelport-sandbox-"))
    copy = private / "artifact"
    shutil.copytree(artifact_dir, copy)
    os.environ.update({SANDBOX_ENV: "1", "TMPDIR": str(private), "HOME": str(private)})
    tempfile.tempdir = str(private)
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    _, hard_cpu = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (limits.load_cpu_seconds, hard_cpu))
    if os.geteuid() == 0:
        for path in (private, *private.rglob("*")):
            os.chown(path, NOBODY, NOBODY)
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    os.chdir(private)
    return copy


def end_load_cpu_limit() -> None:
    """Lift the load's CPU budget again (requests have their own timeout)."""
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
