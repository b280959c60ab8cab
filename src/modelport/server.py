"""The composition root: settings -> registry, store, runtimes, repository, data plane -> ASGI app."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from modelport.api.app import create_app
from modelport.api.inference import InferenceFastPath
from modelport.datasets.service import DatasetService
from modelport.jobs.runner import JobLimits, JobRunner
from modelport.monitoring.predlog import PredictionLog
from modelport.monitoring.service import MonitoringService
from modelport.monitoring.windows import ServingStats
from modelport.registry import Registry, VersionRecord
from modelport.registry.db import make_engine, migrate
from modelport.repository import Limits, ModelRepository
from modelport.runtimes.catalog import RuntimeCatalog
from modelport.runtimes.devices import Hardware
from modelport.runtimes.sandbox import SandboxLimits
from modelport.security.keys import KeyService
from modelport.serving.batcher import BatchPolicy
from modelport.serving.cache import ModelCache
from modelport.serving.dataplane import DataPlane
from modelport.settings import Settings, load_settings
from modelport.storage.crypto import BlobCipher, parse_key
from modelport.storage.factory import open_store

log = logging.getLogger("modelport")


@dataclass
class Services:
    settings: Settings
    registry: Registry
    repository: ModelRepository
    dataplane: DataPlane
    keys: KeyService
    executor: ThreadPoolExecutor
    generated_admin_key: str | None
    datasets: DatasetService
    jobs: JobRunner
    monitoring: MonitoringService

    def close(self) -> None:
        self.jobs.stop()
        self.monitoring.stop()
        self.dataplane.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.registry.engine.dispose()


def policy_for(settings: Settings) -> Callable[[VersionRecord], BatchPolicy]:
    """A version's batching: its own serving config where it sets one, else the server's settings."""

    def policy(record: VersionRecord) -> BatchPolicy:
        batching = record.config.get("batching", {})
        return BatchPolicy(
            int(batching.get("max_batch_size", settings.max_batch_size)),
            float(batching.get("max_delay_ms", settings.max_batch_delay_ms)) / 1000,
            int(batching.get("max_queue", settings.max_queue)),
            int(batching.get("max_batch_tokens", settings.max_batch_tokens)),
        )

    return policy


def build_services(settings: Settings, *, primary: bool = True) -> Services:
    """``primary``: this process owns start-up chores (migrations, crash recovery, the admin key).
    Worker processes of ``serve --workers N`` are not primary: another worker may be mid-push."""
    settings.check()
    data_dir = settings.data_dir
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    if primary:
        migrate(engine)
    registry = Registry(engine)
    cipher = BlobCipher(parse_key(settings.encryption_key)) if settings.encryption_key else None
    store = open_store(settings.resolved_store_url, cipher)
    repository = ModelRepository(
        registry,
        store,
        RuntimeCatalog.from_entry_points(allow_pickle=settings.allow_pickle),
        data_dir / "tmp",
        Limits(
            settings.max_upload_bytes,
            settings.archive_max_entries,
            settings.archive_max_bytes,
            settings.max_concurrent_loads,
            settings.allow_pickle,
            SandboxLimits(int(settings.sandbox_memory_bytes), settings.sandbox_load_cpu_seconds),
            Hardware(
                None if settings.gpu_memory_budget is None else int(settings.gpu_memory_budget),
                settings.resolved_compute_threads,
                settings.workers,
            ),
        ),
    )
    keys = KeyService(registry)
    generated = None
    if primary:
        store.sweep_temp()
        # SQLite is one host's database: no other process pushes while the primary starts
        recovered = repository.recover(sole_writer=engine.dialect.name == "sqlite")
        if engine.dialect.name == "sqlite":  # one host: a job still "running" died with the last run
            recovered["interrupted_jobs"] = len(registry.jobs.interrupt(stale_before=None))
        if any(recovered.values()):
            log.warning("recovered after an unclean stop: %s", recovered)
        generated = keys.bootstrap_admin(data_dir, settings.admin_key) if settings.auth else None
    executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="modelport-infer")
    cache = ModelCache(repository, executor, int(settings.model_memory_budget), policy_for(settings))
    dataplane = DataPlane(registry, cache, settings.request_timeout, settings.generation_timeout)
    dataplane.observers.add(cache.metrics)
    datasets = DatasetService(registry, store, data_dir / "tmp", int(settings.max_dataset_bytes))
    limits = JobLimits(
        settings.max_jobs,
        int(settings.job_memory_bytes),
        settings.job_cpu_seconds,
        settings.job_wall_seconds,
        settings.job_threads,
    )
    jobs = JobRunner(registry, repository, datasets, limits, data_dir / "tmp", dataplane.reconcile)
    monitoring = MonitoringService(
        registry,
        PredictionLog(
            data_dir / "predictions",
            max_bytes=int(settings.prediction_log_max_bytes),
            max_age_seconds=settings.prediction_log_max_age,
        ),
        ServingStats(settings.stats_bucket_seconds),
        lambda model, ref: dataplane.router.route_for(model, ref).pick(),
        datasets,
        retention=settings.stats_retention,
        alert_interval=settings.alert_interval,
        webhook_timeout=settings.webhook_timeout,
        webhook_attempts=settings.webhook_attempts,
    )
    dataplane.observers.add(monitoring.stats)
    dataplane.observers.add(monitoring.predictions)
    return Services(
        settings, registry, repository, dataplane, keys, executor, generated, datasets, jobs, monitoring
    )


def build_app(services: Services) -> InferenceFastPath:
    return create_app(services, services.close)


def worker_app() -> InferenceFastPath:
    """App factory for each process of ``modelport serve --workers N`` (settings come from the env)."""
    settings = load_settings()
    return build_app(build_services(settings, primary=False))
