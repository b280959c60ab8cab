"""Prometheus metrics, one registry per app.

With ``--workers N`` each process writes its samples to files under ``PROMETHEUS_MULTIPROC_DIR`` (set by
``serve`` before the workers start) and ``/metrics``, whichever worker answers it, adds up all of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from modelport.serving.observers import InferenceEvent

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        r = self.registry
        self.requests = Counter(
            "modelport_inference_requests_total",
            "Inference requests answered, by model, version and HTTP status",
            ["model", "version", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "modelport_inference_request_duration_seconds",
            "Time from the request's arrival to its answer",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "modelport_batch_size_rows",
            "Rows per predict call after batching",
            ["model"],
            buckets=BATCH_BUCKETS,
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

    def observe(self, event: InferenceEvent) -> None:
        """The data plane's metrics observer: one request answered."""
        version = "" if event.version is None else str(event.version)
        self.requests.labels(event.model, version, str(event.status)).inc()
        self.latency.labels(event.model).observe(event.duration)
        if event.version is None:
            return
        if event.prompt_tokens:
            self.prompt_tokens.labels(event.model, version).inc(event.prompt_tokens)
        if event.completion_tokens:
            self.completion_tokens.labels(event.model, version).inc(event.completion_tokens)
        if event.first_token is not None:
            self.first_token.labels(event.model, version).observe(event.first_token)
        if event.per_token is not None:
            self.per_token.labels(event.model, version).observe(event.per_token)

    def sequences(self, model: str, version: int) -> Callable[[int, int], None]:
        """A setter of one version's running and waiting sequences (for its scheduler to call)."""
        running = self.sequences_gauge.labels(model, str(version), "running")
        waiting = self.sequences_gauge.labels(model, str(version), "waiting")

        def report(now_running: int, now_waiting: int) -> None:
            running.set(now_running)
            waiting.set(now_waiting)

        return report

    def exposition(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged)
        return generate_latest(merged)


def prepare_multiprocess_dir(directory: Path) -> None:
    """Empty the directory the workers will write to and point the environment at it."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)
