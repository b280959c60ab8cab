"""Loaded versions under memory budgets: loaded on demand, warmed up, least recently used evicted.

Two budgets: host memory (what each version adds to the server's resident memory, or what its worker
process holds) and GPU memory (what the runtime reports). A version is placed on the first device its
runtime declares that this server can give it: a GPU only when a GPU budget is configured.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import cast

from modelport.errors import NotReady
from modelport.monitoring.metrics import Metrics
from modelport.registry import VersionRecord
from modelport.repository import LoadedVersion, ModelRepository, smoke_test
from modelport.runtimes.base import Batching, Capabilities, Scheduler, SchedulingRuntime
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

    @property
    def record(self) -> VersionRecord:
        return self.loaded.record


@dataclass(frozen=True)
class Budgets:
    host: int
    gpu: int = 0  # 0: no GPU is used


class ModelCache:
    def __init__(
        self,
        repository: ModelRepository,
        executor: Executor,
        budgets: Budgets,
        policy_for: Callable[[VersionRecord], BatchPolicy],
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.repository = repository
        self.executor = executor
        self.budgets = budgets
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

    def device_for(self, record: VersionRecord, capabilities: Capabilities) -> str:
        for device in capabilities.devices:
            if device == "cpu" or (device.startswith("cuda") and self.budgets.gpu > 0):
                return device
        raise NotReady(
            f"version {record.version} of {record.model!r} needs a GPU ({', '.join(capabilities.devices)}) "
            "and this server has no GPU memory budget"
        )

    def _load(self, record: VersionRecord) -> ServedVersion:
        if record.size > self.budgets.host:
            raise NotReady(
                f"version {record.version} of {record.model!r} ({record.size} bytes) "
                "exceeds the model memory budget"
            )
        assert record.framework is not None
        device = self.device_for(record, self.repository.runtimes.get(record.framework).capabilities)
        self._make_room(record.size, 0)
        before = rss_bytes()
        loaded = self.repository.load(record, device=device)
        try:
            smoke_test(loaded)  # warm up before taking traffic
        except Exception:
            loaded.close()
            raise
        held = loaded.runtime.memory()
        served = ServedVersion(
            loaded,
            self._scheduler(loaded),
            memory=max(rss_bytes() - before, held.host, record.size),
            gpu_memory=held.gpu,
        )
        with self._guard:
            self._served[(record.model, record.version)] = served
        self._make_room(0, 0)
        self._report()
        freeze_long_lived()
        log.info("loaded %s v%d on %s (%.1f MB)", record.model, record.version, device, served.memory / 1e6)
        return served

    def _scheduler(self, loaded: LoadedVersion) -> Scheduler:
        """The runtime's declared batching decides what requests queue in."""
        batching, policy = loaded.capabilities.batching, self._policy(loaded)
        if batching is Batching.OWN:
            return cast(SchedulingRuntime, loaded.runtime).scheduler(self.executor)
        if batching is Batching.NONE:
            return DirectScheduler(loaded.runtime.predict, self.executor, policy)
        observe = self.metrics.batch_rows.labels(loaded.record.model).observe
        return Batcher(loaded.runtime.predict, self.executor, policy, observe)

    def _policy(self, loaded: LoadedVersion) -> BatchPolicy:
        policy = self.policy_for(loaded.record)
        return replace(policy, tokens=loaded.capabilities.batching is Batching.TOKENS)

    def reconfigure(self, record: VersionRecord) -> None:
        """New serving settings apply to a loaded version at once; no reload."""
        served = self.peek((record.model, record.version))
        if served is not None:
            served.loaded.record = record
            served.scheduler.configure(self._policy(served.loaded))

    def used(self) -> int:
        return sum(s.memory for s in self._served.values())

    def used_gpu(self) -> int:
        return sum(s.gpu_memory for s in self._served.values())

    def _over(self, host: int, gpu: int) -> bool:
        return self.used() + host > self.budgets.host or self.used_gpu() + gpu > self.budgets.gpu

    def _make_room(self, host: int, gpu: int) -> None:
        """Evict least recently used versions until ``host`` and ``gpu`` more bytes fit the budgets."""
        while self._served and self._over(host, gpu):
            with self._guard:
                if len(self._served) <= 1 and host == 0 and gpu == 0:
                    return  # the only loaded version stays, even when alone it is over budget
                key = min(self._served, key=lambda k: self._served[k].last_used)
            self.evict(*key)

    def evict(self, model: str, version: int | None = None) -> int:
        """Take versions out of the cache; each is closed once its in-flight requests are done."""
        with self._guard:
            keys = [k for k in self._served if k[0] == model and (version is None or k[1] == version)]
            removed = [self._served.pop(k) for k in keys]
        for served in removed:
            self._retire(served)
        if removed:
            release_memory()
            self._report()
        return len(removed)

    def _report(self) -> None:
        self.metrics.loaded_versions.set(len(self._served))
        self.metrics.loaded_bytes.set(self.used())

    @staticmethod
    def _retire(served: ServedVersion) -> None:
        # requests that already hold this version finish on it, up to a bound
        if not served.scheduler.wait_idle(DRAIN_SECONDS):
            log.warning("%s v%d retired with requests in flight", served.record.model, served.record.version)
        served.scheduler.close()
        served.loaded.close()

    def loaded_keys(self) -> list[Key]:
        return list(self._served)

    def close(self) -> None:
        for model in {k[0] for k in list(self._served)}:
            self.evict(model)
