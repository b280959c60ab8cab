"""Process memory: resident set size, and handing freed memory back to the operating system."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of this process, or of the process ``pid`` (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        if pid != "self":
            return 0
        import resource  # not Linux

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def freeze_long_lived() -> None:
    """Move every object alive now (frameworks, loaded models) out of the garbage collector's scans.

    A full collection walks every tracked object; with a framework and a few models loaded that takes
    ~100 ms, stalling the event loop: the p99 latency under load. Frozen objects are still freed by
    reference counting; ``release_memory`` unfreezes first so that cycles of evicted models go too.
    """
    gc.collect()
    gc.freeze()


def release_memory() -> None:
    """Collect garbage, then ask glibc to return free heap pages (without it RSS rarely drops)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name).malloc_trim(0)
