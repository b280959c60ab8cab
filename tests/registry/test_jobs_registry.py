"""The job queue, datasets and alias compare-and-set, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from modelport.errors import Conflict
from modelport.registry import Registry
from modelport.registry.db import utcnow
from modelport.registry.jobs import JobState
from tests.registry.test_registry import add


def submit(registry: Registry, model: str = "iris", dataset: str = "d", version: int | None = 1) -> int:
    spec = {"request": {"estimator": "random_forest"}, "task": "classification", "metric": "accuracy"}
    return registry.jobs.submit(
        kind="train", model=model, dataset=dataset, dataset_version=version, spec=spec, by="t"
    ).id


def test_claims_are_exclusive_and_bounded_under_contention(registry: Registry) -> None:
    ids = [submit(registry) for _ in range(4)]
    with ThreadPoolExecutor(8) as pool:
        claimed = list(pool.map(lambda i: registry.jobs.claim(f"owner-{i}", 2), range(8)))
    taken = [c for c in claimed if c is not None]
    assert len(taken) == 2 and len({c.id for c in taken}) == 2
    assert {c.id for c in taken} == set(ids[:2])  # the oldest two, whichever thread got which
    assert registry.jobs.claim("late", 2) is None  # two run: the limit holds
    first = taken[0]
    owner = next(f"owner-{i}" for i, c in enumerate(claimed) if c is not None and c.id == first.id)
    ended = registry.jobs.finish(first.id, owner, JobState.SUCCEEDED, result={"version": 1}, version=1)
    assert ended is not None and ended.state is JobState.SUCCEEDED and ended.progress == 1.0
    assert registry.jobs.claim("late", 2).id == ids[2]  # type: ignore[union-attr]


def test_cancel_of_a_queued_job_ends_it_and_claims_skip_it(registry: Registry) -> None:
    queued = submit(registry)
    later = submit(registry)
    assert registry.jobs.cancel(queued).state is JobState.CANCELLED
    with pytest.raises(Conflict):
        registry.jobs.cancel(queued)
    claimed = registry.jobs.claim("o", 5)
    assert claimed is not None and claimed.id == later
    running = registry.jobs.cancel(later)
    assert running.state is JobState.RUNNING and running.cancel_requested
    assert registry.jobs.heartbeat(later, "o") is True  # the owner learns of it at its next heartbeat


def test_an_interrupted_job_is_no_longer_its_owners(registry: Registry) -> None:
    job = submit(registry)
    assert registry.jobs.claim("o", 1) is not None
    registry.jobs.touch([job], "o")
    assert registry.jobs.interrupt(stale_before=utcnow() - timedelta(seconds=30)) == []  # fresh heartbeat
    interrupted = registry.jobs.interrupt(stale_before=utcnow() + timedelta(seconds=1))
    assert [j.id for j in interrupted] == [job] and interrupted[0].error.startswith("interrupted")  # type: ignore[union-attr]
    assert registry.jobs.heartbeat(job, "o") is True  # stop: not yours any more
    assert registry.jobs.finish(job, "o", JobState.SUCCEEDED, version=3) is None  # the first word stands
    assert registry.jobs.get(job).state is JobState.FAILED and registry.jobs.get(job).version is None


def test_events_are_numbered_in_order_and_page(registry: Registry) -> None:
    job = submit(registry)
    registry.jobs.claim("o", 1)
    registry.jobs.heartbeat(job, "o", progress=0.5, step="half", events=[("log", {"message": "a"})])
    registry.jobs.add_event(job, "log", {"message": "b"})
    events = registry.jobs.events(job)
    assert [e.kind for e in events] == ["state", "state", "log", "log"]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert registry.jobs.events(job, after=events[1].seq) == events[2:]
    assert registry.jobs.get(job).step == "half" and registry.jobs.get(job).progress == 0.5


def test_a_dataset_in_use_is_known(registry: Registry) -> None:
    registry.datasets.add_version("d", sha256="a" * 64, size=1, format="csv", rows=1, info={}, by="t")
    second = registry.datasets.add_version(
        "d", sha256="c" * 64, size=1, format="csv", rows=1, info={}, by="t"
    )
    assert second.version == 2 and registry.datasets.get_version("d").version == 2
    waiting = submit(registry, version=1)
    assert registry.jobs.using_dataset("d") == [waiting] and registry.jobs.using_dataset("d", 2) == []
    registry.jobs.claim("o", 1)
    version = add(registry)
    registry.jobs.finish(waiting, "o", JobState.SUCCEEDED, version=version)
    assert registry.jobs.using_dataset("d", 1) == [waiting]  # the version's lineage names it
    registry.models.delete_version("iris", version)
    assert registry.jobs.using_dataset("d", 1) == []


def test_alias_moves_only_from_the_expected_version(registry: Registry) -> None:
    one, two, three = add(registry), add(registry), add(registry)
    registry.aliases.set("iris", "production", one, by="t", expected=None)  # created
    with pytest.raises(Conflict):
        registry.aliases.set("iris", "production", two, by="t", expected=None)  # exists now
    with pytest.raises(Conflict, match="moved to version 1"):
        registry.aliases.set("iris", "production", three, by="t", expected=two)
    registry.aliases.set("iris", "production", three, by="t", expected=one)
    assert registry.aliases.find("iris", "production").version == three  # type: ignore[union-attr]
