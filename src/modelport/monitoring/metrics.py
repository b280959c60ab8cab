"""Prometheus metrics, one registry per app.

With ``--workers N`` each process writes its samples to files under ``PROMETHEUS_MULTIPROC_DIR`` (set by
``serve`` before the workers start) and ``/metrics``, whichever worker answers it, adds up all of them
(gauges with ``livesum``: the processes alive now).

Label sets stay bounded: a model's name is a label only once a version of it has been loaded (or tried)
in this process, or when a version answered; every other request counts under ``model=""``. The metric
children of a loaded version are looked up once, not per request. A version's queue and in-flight gauges
are read from its scheduler when scraped (one process) or written by the scheduler as they change
(``--workers``: each process its own); they go when the version leaves the cache. With ``--workers`` the
files cannot forget a series: a version's gauges are left out of ``/metrics`` while the last thing any
worker did to it was to retire it and nothing of it is queued or running anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from modelport.serving.batcher import Meters
from modelport.serving.observers import InferenceEvent

log = logging.getLogger("modelport.metrics")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
EVICTION_REASONS = ("memory", "deleted", "unloaded", "replaced")
RETIRED = "modelport_internal_retired"  # --workers: 1 when a version's latest news is its retirement
LEVELS = ("modelport_queue_depth", "modelport_inflight_requests", "modelport_generation_sequences")


class Watched(Protocol):
    """A scheduler as the gauges read it."""

    @property
    def inflight(self) -> int: ...

    @property
    def queued(self) -> int: ...


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        r = self.registry
        self.requests = Counter(
            "modelport_inference_requests_total",
            "Inference requests answered, by model, version, surface (v2, openai, mlflow) and HTTP status",
            ["model", "version", "surface", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "modelport_inference_request_duration_seconds",
            "Time from the request's arrival to its answer",
            ["model", "version", "surface"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "modelport_queue_wait_seconds",
            "Per request: time from its submission to the scheduler until its batch starts computing",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            "modelport_compute_seconds",
            "Per predict call (one batch): the time the runtime computed",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "modelport_batch_size_rows",
            "Rows per predict call after batching",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "modelport_queue_depth",
            "Requests waiting in a version's batcher",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.inflight = Gauge(
            "modelport_inflight_requests",
            "Requests submitted to a version and not yet answered",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.load_seconds = Histogram(
            "modelport_model_load_seconds",
            "Time to load and warm up a version",
            ["model", "version"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.loads = Counter(
            "modelport_model_loads_total",
            "Loads of a version, by outcome (ok, failed)",
            ["model", "version", "outcome"],
            registry=r,
        )
        self.evictions = Counter(
            "modelport_cache_evictions_total",
            "Versions taken out of the cache, by reason (" + ", ".join(EVICTION_REASONS) + ")",
            ["reason"],
            registry=r,
        )
        self.loaded_bytes = Gauge(
            "modelport_loaded_model_memory_bytes",
            "Memory charged to loaded versions",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.loaded_versions = Gauge(
            "modelport_loaded_versions",
            "Versions loaded and serving",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.gpu_memory = Gauge(
            "modelport_gpu_memory_bytes",
            "GPU memory of this server's processes, per device: allocated by tensors, reserved by the "
            "caching allocator",
            ["device", "kind"],
            registry=r,
            multiprocess_mode="livesum",
        )

        self.prompt_tokens = Counter(
            "modelport_prompt_tokens_total",
            "Tokens of the prompts and texts of generation and embedding requests",
            ["model", "version"],
            registry=r,
        )
        self.completion_tokens = Counter(
            "modelport_completion_tokens_total",
            "Tokens generated",
            ["model", "version"],
            registry=r,
        )
        self.first_token = Histogram(
            "modelport_time_to_first_token_seconds",
            "Time from a generation request's arrival to its first token",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.per_token = Histogram(
            "modelport_time_per_output_token_seconds",
            "Time per generated token after the first, per request",
            ["model", "version"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.sequences_gauge = Gauge(
            "modelport_generation_sequences",
            "Sequences being decoded (running) and waiting for a slot, per version",
            ["model", "version", "state"],
            registry=r,
            multiprocess_mode="livesum",
        )
        for reason in EVICTION_REASONS:  # every reason shows, at 0 until it happens
            self.evictions.labels(reason)
        self.retired_marker = Gauge(
            RETIRED,
            "Never shown: whether the latest load or retirement of a version, in any worker, retired it",
            ["model", "version"],
            registry=None,  # only ever read from the workers' files
            multiprocess_mode="livemostrecent",
        )
        self._known: set[str] = set()  # models a version of which was loaded (or tried) here
        self._gauged: dict[tuple[str, str], set[tuple[Gauge, tuple[str, ...]]]] = {}  # a version's gauges
        # (model, version, surface, status) -> (request counter, latency histogram) children
        self._answered: dict[tuple[str, int | None, str, int], tuple[Any, Any]] = {}

    # ---- the data plane's observer ----------------------------------------------------------------
    def observe(self, event: InferenceEvent) -> None:
        """The data plane's metrics observer: one request answered."""
        model, version = event.model, event.version
        if version is None and model not in self._known:
            model = ""  # unknown names never make series
        key = (model, version, event.surface, event.status)
        children = self._answered.get(key)
        if children is None:
            shown = "" if version is None else str(version)
            children = self._answered[key] = (
                self.requests.labels(model, shown, event.surface, str(event.status)),
                self.latency.labels(model, shown, event.surface),
            )
        children[0].inc()
        children[1].observe(event.duration)
        if version is None:
            return
        shown = str(version)
        if event.prompt_tokens:
            self.prompt_tokens.labels(model, shown).inc(event.prompt_tokens)
        if event.completion_tokens:
            self.completion_tokens.labels(model, shown).inc(event.completion_tokens)
        if event.first_token is not None:
            self.first_token.labels(model, shown).observe(event.first_token)
        if event.per_token is not None:
            self.per_token.labels(model, shown).observe(event.per_token)

    # ---- the cache's versions -----------------------------------------------------------------------
    def meters(self, model: str, version: int, queue: bool = True) -> Meters:
        """What a version's scheduler reports to (``queue``: it has a queue of its own, a ``Batcher``)."""
        self._known.add(model)
        shown = str(version)
        levels = None
        if self.multiprocess:  # each process writes its own levels as they change
            self.retired_marker.labels(model, shown).set(0)
            inflight = self._gauge(self.inflight, model, shown).set
            depth = self._gauge(self.queue_depth, model, shown).set if queue else None

            def levels(queued: int, in_flight: int) -> None:
                inflight(in_flight)
                if depth is not None:
                    depth(queued)

        return Meters(
            rows=self.batch_rows.labels(model, shown).observe,
            waited=self.queue_wait.labels(model, shown).observe,
            computed=self.compute.labels(model, shown).observe,
            levels=levels,
        )

    def watch(self, model: str, version: int, scheduler: Watched, queue: bool = True) -> None:
        """In one process, a version's queue and in-flight gauges are read from its scheduler when
        scraped (nothing per request); with ``--workers``, ``meters(...).levels`` writes them."""
        if self.multiprocess:
            return
        shown = str(version)
        self._gauge(self.inflight, model, shown).set_function(lambda: scheduler.inflight)
        if queue:
            self._gauge(self.queue_depth, model, shown).set_function(lambda: scheduler.queued)

    def sequences(self, model: str, version: int) -> Callable[[int, int], None]:
        """A setter of one version's running and waiting sequences (for its scheduler to call)."""
        self._known.add(model)
        if self.multiprocess:
            self.retired_marker.labels(model, str(version)).set(0)
        running = self._gauge(self.sequences_gauge, model, str(version), "running")
        waiting = self._gauge(self.sequences_gauge, model, str(version), "waiting")

        def report(now_running: int, now_waiting: int) -> None:
            running.set(now_running)
            waiting.set(now_waiting)

        return report

    def load_started(self, model: str) -> None:
        self._known.add(model)

    def load_finished(self, model: str, version: int, seconds: float | None) -> None:
        """One load (and warm-up) of a version: its time, or None when it failed."""
        shown = str(version)
        self.loads.labels(model, shown, "failed" if seconds is None else "ok").inc()
        if seconds is not None:
            self.load_seconds.labels(model, shown).observe(seconds)

    def evicted(self, reason: str) -> None:
        self.evictions.labels(reason if reason in EVICTION_REASONS else "unloaded").inc()

    def _gauge(self, gauge: Gauge, model: str, version: str, *more: str) -> Any:
        """A version's gauge child, remembered so that ``retired`` takes it away."""
        labels = (model, version, *more)
        self._gauged.setdefault((model, version), set()).add((gauge, labels))
        return gauge.labels(*labels)

    def retired(self, model: str, version: int) -> None:
        """A version left the cache: its gauges go (so it does not linger as live)."""
        gauges = self._gauged.pop((model, str(version)), ())
        if gauges and self.multiprocess:
            self.retired_marker.labels(model, str(version)).set(1)
        for gauge, labels in gauges:
            if self.multiprocess:  # the files cannot forget a series: this process's share drops to 0
                gauge.labels(*labels).set(0)  # (and exposition leaves it out)
                continue
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)

    def gpu(self) -> None:
        """GPU memory of this process, when it uses CUDA: torch is never imported (nor CUDA started)
        just for this."""
        torch = sys.modules.get("torch")
        if torch is None:
            return
        try:
            cuda = torch.cuda
            if not cuda.is_initialized():
                return
            for index in range(cuda.device_count()):
                device = f"cuda:{index}"
                self.gpu_memory.labels(device, "allocated").set(cuda.memory_allocated(index))
                self.gpu_memory.labels(device, "reserved").set(cuda.memory_reserved(index))
        except Exception:
            log.debug("GPU memory could not be read", exc_info=True)

    def exposition(self) -> bytes:
        self.gpu()
        if not self.multiprocess:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged)
        return generate_latest(_WithoutRetired(merged))


class _WithoutRetired:
    """--workers: every worker's samples added up, less the gauges of retired versions (see the module
    docstring) and the marker that tells them."""

    def __init__(self, merged: CollectorRegistry) -> None:
        self.merged = merged

    def collect(self) -> Iterator[Metric]:
        families = list(self.merged.collect())
        retired = {
            (s.labels["model"], s.labels["version"])
            for f in families
            if f.name == RETIRED
            for s in f.samples
            if s.value
        }
        left: dict[tuple[str, str], float] = {}  # what is queued or running of each version, anywhere
        for family in families:
            if family.name in LEVELS:
                for s in family.samples:
                    key = (s.labels["model"], s.labels["version"])
                    left[key] = left.get(key, 0) + abs(s.value)
        gone = {key for key in retired if not left.get(key)}
        for family in families:
            if family.name == RETIRED:
                continue
            if family.name in LEVELS and gone:
                family.samples = [
                    s for s in family.samples if (s.labels["model"], s.labels["version"]) not in gone
                ]
            yield family


def prepare_multiprocess_dir(directory: Path) -> None:
    """Empty the directory the workers will write to and point the environment at it."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)
