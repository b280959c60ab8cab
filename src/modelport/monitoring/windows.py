"""Serving statistics over time: requests, errors and latency per version and time bucket.

``ServingStats`` is a data-plane observer: each answered request adds to the bucket of its version
(a dict update and a bisect, on the event loop). The monitoring loop drains closed buckets into the
registry (``registry.monitoring.add_stats``) under this process's ``origin``, so the windows of the
monitoring API and the alert rules add up every worker and every host. Latencies are counted in
log-spaced buckets (each 25% wider than the last, 0.1 ms to about a minute), from which quantiles are
read to within that width.
"""

from __future__ import annotations

import bisect
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from modelport.registry.monitoring import StatsBucket
from modelport.serving.observers import InferenceEvent

EDGES: tuple[float, ...] = tuple(0.0001 * 1.25**i for i in range(60))  # upper bounds; one more for beyond
ERROR_STATUS = 500  # server errors count against a version; a client's bad request does not


def process_origin() -> str:
    """This process, distinct from every other one writing statistics."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class ServingStats:
    def __init__(self, bucket_seconds: int) -> None:
        self.bucket_seconds = bucket_seconds
        self._lock = threading.Lock()
        self._open: dict[tuple[str, int, int], Summary] = {}

    def observe(self, event: InferenceEvent, now: float | None = None) -> None:
        """Count one answered request against the version that answered (or failed to)."""
        if not event.model or event.version is None:
            return
        moment = time.time() if now is None else now
        key = (event.model, event.version, int(moment // self.bucket_seconds) * self.bucket_seconds)
        slot = bisect.bisect_left(EDGES, event.duration)
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                entry = self._open[key] = Summary(counts=[0] * (len(EDGES) + 1))
            entry.requests += 1
            if event.status >= ERROR_STATUS:
                entry.errors += 1
            entry.latency_sum += event.duration
            entry.counts[slot] += 1  # type: ignore[index]

    def peek(self) -> list[StatsBucket]:
        """The buckets still open in this process (not yet in the registry), copied."""
        with self._lock:
            return [
                StatsBucket(model, version, start, e.requests, e.errors, e.latency_sum, list(e.counts or []))
                for (model, version, start), e in self._open.items()
            ]

    def drain(self, now: float | None = None) -> list[StatsBucket]:
        """Take the buckets that have closed (all of them when ``now`` is None)."""
        with self._lock:
            if now is None:
                taken, self._open = self._open, {}
            else:
                taken = {k: v for k, v in self._open.items() if k[2] + self.bucket_seconds <= now}
                for key in taken:
                    del self._open[key]
        return [
            StatsBucket(model, version, start, e.requests, e.errors, e.latency_sum, e.counts or [])
            for (model, version, start), e in taken.items()
        ]


@dataclass
class Summary:
    """Several buckets added up: what the monitoring API reports for a version over a window or step."""

    requests: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    counts: list[int] | None = None

    def add(self, bucket: StatsBucket) -> None:
        self.requests += bucket.requests
        self.errors += bucket.errors
        self.latency_sum += bucket.latency_sum
        if self.counts is None:
            self.counts = list(bucket.latency_counts)
        else:
            self.counts = [a + b for a, b in zip(self.counts, bucket.latency_counts, strict=False)]

    def quantile(self, q: float) -> float | None:
        """The latency below which a share ``q`` of the requests fell, interpolated within its bucket."""
        counts = self.counts
        total = sum(counts) if counts else 0
        if not counts or total == 0:
            return None
        rank = q * total
        seen = 0
        for i, count in enumerate(counts):
            if count and seen + count >= rank:
                low = EDGES[i - 1] if i > 0 else 0.0
                high = EDGES[i] if i < len(EDGES) else EDGES[-1] * 1.25
                return low + (high - low) * (rank - seen) / count
            seen += count
        return EDGES[-1]

    def figures(self, seconds: float) -> dict[str, float | int | None]:
        mean = self.latency_sum / self.requests if self.requests else None
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else None,
            "throughput": self.requests / seconds if seconds > 0 else None,
            "p50": self.quantile(0.5),
            "p90": self.quantile(0.9),
            "p99": self.quantile(0.99),
            "mean": mean,
        }


def summarise(buckets: Iterable[StatsBucket]) -> dict[int, Summary]:
    """Per version."""
    out: dict[int, Summary] = {}
    for bucket in buckets:
        out.setdefault(bucket.version, Summary()).add(bucket)
    return out


def series(buckets: Sequence[StatsBucket], version: int, start: int, end: int, step: int) -> list[Summary]:
    """One summary per ``step`` seconds from ``start`` to ``end`` (oldest first)."""
    points = [Summary() for _ in range(max(1, (end - start + step - 1) // step))]
    for bucket in buckets:
        if bucket.version == version and start <= bucket.bucket < end:
            points[(bucket.bucket - start) // step].add(bucket)
    return points
