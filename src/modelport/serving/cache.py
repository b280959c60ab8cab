"""Loaded versions under memory budgets: loaded on demand, warmed up, least recently used evicted.

Two budgets: host memory (what each version adds to the server's resident memory, or what its worker
process holds) and GPU memory (what the runtime reports). A version is placed where its config asks
(``device``: auto, cpu, cuda, cuda:N) among the devices its runtime declares; ``auto`` takes a GPU when
this server has GPU memory to give (see ``runtimes.devices``). A version that finds no room on its device
is marked failed with the reason; the others keep serving.

Metrics: each load's time and outcome, each eviction's reason (``memory``: to make room; ``deleted``,
``unloaded``: the registry said so; ``replaced``: a copy loaded with new settings took its place), the
memory charged, and a version's gauges, taken away when it leaves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import cast

from modelport.errors import ModelportError, NotReady, OutOfMemory
from modelport.monitoring.metrics import Metrics
from modelport.registry import VersionRecord
from modelport.repository import LoadedVersion, ModelRepository, smoke_test
from modelport.runtimes.base import Batching, LoadOptions, Scheduler, SchedulingRuntime, is_cuda
from modelport.serving.batcher import Batcher, BatchPolicy, DirectScheduler
from modelport.serving.memory import freeze_long_lived, release_memory, rss_bytes

log = logging.getLogger("modelport.cache")
Key = tuple[str, int]
DRAIN_SECONDS = 30.0  # how long a retired version waits for the requests that already hold it


@dataclass
class ServedVersion:
    loaded: LoadedVersion
    scheduler: Scheduler
    memory: int  # host bytes charged to this version (at least its artifact size)
    gpu_memory: int = 0
    last_used: float = field(default_factory=time.monotonic)
    retired: bool = False

    @property
    def record(self) -> VersionRecord:
        return self.loaded.record


class ModelCache:
    def __init__(
        self,
        repository: ModelRepository,
        executor: Executor,
        host_budget: int,
        policy_for: Callable[[VersionRecord], BatchPolicy],
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.repository = repository
        self.executor = executor
        self.host_budget = host_budget
        self.policy_for = policy_for
        self._served: dict[Key, ServedVersion] = {}
        self._load_locks: dict[Key, threading.Lock] = {}
        self._guard = threading.Lock()

    def peek(self, key: Key) -> ServedVersion | None:
        served = self._served.get(key)
        if served is not None:
            served.last_used = time.monotonic()
        return served

    def get(self, record: VersionRecord) -> ServedVersion:
        """The served version, loading and warming it first if needed (blocking: call off the loop)."""
        key = (record.model, record.version)
        served = self.peek(key)
        if served is not None:
            return served
        with self._guard:
            lock = self._load_locks.setdefault(key, threading.Lock())
        with lock:  # one load per version even when many first requests arrive together
            served = self.peek(key)
            if served is None:
                served = self._load(record)
        return served

    def _load(self, record: VersionRecord) -> ServedVersion:
        self.metrics.load_started(record.model)
        began = time.perf_counter()
        try:
            served = self._load_timed(record)
        except BaseException:
            self.metrics.load_finished(record.model, record.version, None)
            raise
        self.metrics.load_finished(record.model, record.version, time.perf_counter() - began)
        return served

    def _load_timed(self, record: VersionRecord) -> ServedVersion:
        options = self.repository.options_for(record)
        on_gpu = is_cuda(options.device)
        # what the weights will take, as far as the artifact tells: on the GPU or on the host
        expected = record.size // (2 if options.dtype in ("float16", "bfloat16") else 1)
        if not on_gpu and record.size > self.host_budget:
            raise NotReady(
                f"version {record.version} of {record.model!r} ({record.size} bytes) "
                "exceeds the model memory budget"
            )
        self._make_room(0 if on_gpu else record.size, expected if on_gpu else 0)
        before = rss_bytes()
        try:
            loaded = self._load_warm(record, options)
        except OutOfMemory:
            if not self._evict_gpu_versions():
                raise
            loaded = self._load_warm(record, options)  # once more, with the GPU to itself
        held = loaded.runtime.memory()
        grown = max(rss_bytes() - before, held.host)
        served = ServedVersion(
            loaded,
            self._scheduler(loaded),
            memory=grown if on_gpu else max(grown, record.size),
            gpu_memory=held.gpu,
        )
        with self._guard:
            self._served[(record.model, record.version)] = served
        self._make_room(0, 0)
        self._report()
        freeze_long_lived()
        log.info(
            "loaded %s v%d on %s (%.1f MB)", record.model, record.version, options.device, served.memory / 1e6
        )
        return served

    def _load_warm(self, record: VersionRecord, options: LoadOptions) -> LoadedVersion:
        """Load and warm up; a version that finds no room on its device is marked failed, with why."""
        try:
            loaded = self.repository.load(record, options=options)
            try:
                smoke_test(loaded)  # warm up before taking traffic
            except Exception:
                loaded.close()
                raise
        except OutOfMemory as exc:
            if not self._gpu_keys():  # nothing left to make room with: this version cannot load here
                self.repository.mark_failed(record, exc.message)
            raise
        return loaded

    def _gpu_keys(self) -> list[Key]:
        return [k for k, s in self._served.items() if s.gpu_memory > 0]

    def _evict_gpu_versions(self) -> bool:
        """Make the GPU free for one load that ran out of memory (their estimate was too low)."""
        keys = self._gpu_keys()
        for key in keys:
            self.evict(*key, reason="memory")
        return bool(keys)

    def _scheduler(self, loaded: LoadedVersion) -> Scheduler:
        """The runtime's declared batching decides what requests queue in."""
        batching, policy = loaded.capabilities.batching, self._policy(loaded)
        model, version = loaded.record.model, loaded.record.version
        if batching is Batching.OWN:  # its sequences running and waiting are its gauges
            gauges = self.metrics.sequences(model, version)
            return cast(SchedulingRuntime, loaded.runtime).scheduler(self.executor, policy, gauges)
        scheduler: Batcher | DirectScheduler
        queue = batching is not Batching.NONE
        meters = self.metrics.meters(model, version, queue=queue)
        if queue:
            scheduler = Batcher(loaded.runtime.predict, self.executor, policy, meters)
        else:
            scheduler = DirectScheduler(loaded.runtime.predict, self.executor, policy, meters)
        self.metrics.watch(model, version, scheduler, queue=queue)
        return scheduler

    def _policy(self, loaded: LoadedVersion) -> BatchPolicy:
        policy = self.policy_for(loaded.record)
        return replace(policy, tokens=loaded.capabilities.batching is Batching.TOKENS)

    def reconfigure(self, record: VersionRecord) -> None:
        """New batching settings apply to a loaded version at once; a new device, dtype or runtime
        setting loads the version again that way, then switches to it and retires the old copy."""
        served = self.peek((record.model, record.version))
        if served is None:
            return
        try:
            reload = self.repository.options_for(record) != served.loaded.options
        except ModelportError:
            reload = True  # e.g. a device this server cannot give: the next request says why
        if reload:
            self._reload(served, record)
            return
        served.loaded.record = record
        served.scheduler.configure(self._policy(served.loaded))

    def _reload(self, served: ServedVersion, record: VersionRecord) -> None:
        """Load the version the new way first, then switch to it and retire the old copy: requests
        keep being answered throughout. If the new way fails, the old copy is taken out."""
        key = (record.model, record.version)
        try:
            self._load(record)  # replaces the cache entry once warm
        except Exception as exc:
            log.warning("%s v%d could not be loaded with its new settings: %s", *key, exc)
            with self._guard:
                if self._served.get(key) is served:
                    del self._served[key]
                    self.metrics.retired(*key)
        if not served.retired:
            self.metrics.evicted("replaced")
        self._retire(served)
        release_memory()
        self._report()

    def used(self) -> int:
        return sum(s.memory for s in self._served.values())

    def used_gpu(self) -> int:
        return sum(s.gpu_memory for s in self._served.values())

    def _over(self, host: int, gpu: int) -> bool:
        if self.used() + host > self.host_budget:
            return True
        gpu_used = self.used_gpu() + gpu
        return gpu_used > 0 and gpu_used > self.repository.limits.hardware.gpu_memory()

    def _make_room(self, host: int, gpu: int) -> None:
        """Evict least recently used versions until ``host`` and ``gpu`` more bytes fit the budgets."""
        while self._served and self._over(host, gpu):
            with self._guard:
                if len(self._served) <= 1 and host == 0 and gpu == 0:
                    return  # the only loaded version stays, even when alone it is over budget
                key = min(self._served, key=lambda k: self._served[k].last_used)
            self.evict(*key, reason="memory")

    def evict(self, model: str, version: int | None = None, reason: str | None = "unloaded") -> int:
        """Take versions out of the cache; each is closed once its in-flight requests are done.
        ``reason`` (memory, deleted, unloaded; None: not counted) is that of the eviction metric."""
        with self._guard:
            keys = [k for k in self._served if k[0] == model and (version is None or k[1] == version)]
            removed = [self._served.pop(k) for k in keys]
            for key in keys:
                self.metrics.retired(*key)
        for served in removed:
            if reason is not None and not served.retired:
                self.metrics.evicted(reason)
            self._retire(served)
        if removed:
            release_memory()
            self._report()
        return len(removed)

    def _report(self) -> None:
        self.metrics.loaded_versions.set(len(self._served))
        self.metrics.loaded_bytes.set(self.used())
        self.metrics.gpu()  # what loading or evicting changed, in every process (not only the scraped one)

    @staticmethod
    def _retire(served: ServedVersion) -> None:
        if served.retired:  # e.g. evicted to make room while its replacement loaded
            return
        served.retired = True
        # requests that already hold this version finish on it, up to a bound
        if not served.scheduler.wait_idle(DRAIN_SECONDS):
            log.warning("%s v%d retired with requests in flight", served.record.model, served.record.version)
        served.scheduler.close()
        served.loaded.close()

    def placement(self, record: VersionRecord) -> dict[str, str]:
        """Where the version runs and in what dtype: as loaded, or as configured until it is."""
        served = self._served.get((record.model, record.version))
        if served is not None:
            options = served.loaded.options
            placed = {"device": options.device, **({"dtype": options.dtype} if options.dtype else {})}
        else:
            placed = {"device": str(record.config.get("device", "auto"))}
            if "dtype" in record.config:
                placed["dtype"] = str(record.config["dtype"])
        task = record.metadata.get("task")
        return {**placed, "task": str(task)} if task else placed

    def loaded_keys(self) -> list[Key]:
        return list(self._served)

    def close(self) -> None:
        for model in {k[0] for k in list(self._served)}:
            self.evict(model, reason=None)
