"""Loaded versions under a memory budget: loaded on demand, warmed up, least recently used evicted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from modelport.errors import NotReady
from modelport.monitoring.metrics import Metrics
from modelport.registry import VersionRecord
from modelport.repository import LoadedVersion, ModelRepository, smoke_test
from modelport.serving.batcher import Batcher, BatchPolicy
from modelport.serving.memory import freeze_long_lived, release_memory, rss_bytes

log = logging.getLogger("modelport.cache")
Key = tuple[str, int]


@dataclass
class ServedVersion:
    loaded: LoadedVersion
    batcher: Batcher
    memory: int  # bytes attributed to this version (RSS growth while loading, at least its artifact size)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def record(self) -> VersionRecord:
        return self.loaded.record


class ModelCache:
    def __init__(
        self,
        repository: ModelRepository,
        executor: Executor,
        budget: int,
        policy_for: Callable[[VersionRecord], BatchPolicy],
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.repository = repository
        self.executor = executor
        self.budget = budget
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
        if record.size > self.budget:
            raise NotReady(
                f"version {record.version} of {record.model!r} ({record.size} bytes) "
                "exceeds the model memory budget"
            )
        self._make_room(record.size)
        before = rss_bytes()
        loaded = self.repository.load(record)
        try:
            smoke_test(loaded)  # warm up before taking traffic
        except Exception:
            loaded.close()
            raise
        memory = max(rss_bytes() - before, record.size)
        runtime = loaded.runtime
        batch_rows = self.metrics.batch_rows.labels(record.model)
        batcher = Batcher(runtime.predict, self.executor, self.policy_for(record), batch_rows.observe)
        served = ServedVersion(loaded, batcher, memory)
        with self._guard:
            self._served[(record.model, record.version)] = served
        self._make_room(0)
        self._report()
        freeze_long_lived()
        log.info("loaded %s v%d (%.1f MB)", record.model, record.version, memory / 1e6)
        return served

    def used(self) -> int:
        return sum(s.memory for s in self._served.values())

    def _make_room(self, incoming: int) -> None:
        """Evict least recently used versions until ``incoming`` more bytes fit the budget."""
        while self._served and self.used() + incoming > self.budget:
            with self._guard:
                if len(self._served) <= 1 and incoming == 0:
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

    def _retire(self, served: ServedVersion) -> None:
        deadline = time.monotonic() + 30
        while served.batcher.inflight and time.monotonic() < deadline:
            time.sleep(0.005)  # drain: requests that already hold this version finish on it
        served.batcher.close()
        served.loaded.close()

    def loaded_keys(self) -> list[Key]:
        return list(self._served)

    def close(self) -> None:
        for model in {k[0] for k in list(self._served)}:
            self.evict(model)
