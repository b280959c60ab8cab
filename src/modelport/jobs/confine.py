"""Limits a job's process puts on itself before it reads anything (Linux).

Memory is ``RLIMIT_DATA``: what the process allocates (heap and private anonymous mappings), so numpy's
allocations past it raise ``MemoryError``; unlike ``RLIMIT_AS`` it does not count shared libraries, which
take a gigabyte of address space once scikit-learn, XGBoost and LightGBM are imported. CPU time is
``RLIMIT_CPU`` (SIGXCPU at the soft limit, SIGKILL a little after). The parent-death signal ends the job
with the server that started it, even when the server is killed with SIGKILL."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1


def confine(memory_bytes: int, cpu_seconds: int, parent_pid: int) -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    grace = cpu_seconds + 5
    resource.setrlimit(
        resource.RLIMIT_CPU, (cpu_seconds, grace if hard == resource.RLIM_INFINITY else min(grace, hard))
    )
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the server died before the signal was armed
        os._exit(1)
