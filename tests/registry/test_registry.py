"""The registry contract, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from modelport.errors import Conflict, NotFound
from modelport.registry import ChangeKind, Registry, VersionState
from modelport.registry.db import MIGRATIONS, make_engine, migrate
from modelport.registry.records import FileEntry
from modelport.registry.tables import Base

FILE = FileEntry("model.skops", "a" * 64, 10)


def add(registry: Registry, model: str = "iris", state: VersionState = VersionState.READY) -> int:
    registry.models.ensure_model(model, by="t")
    v = registry.models.add_version(
        model, sha256="b" * 64, size=10, manifest=[FILE], framework="sklearn", by="t"
    )
    if state is not VersionState.PENDING:
        registry.models.set_version_state(
            model, v.version, state, error="boom" if state is VersionState.FAILED else None
        )
    return v.version


def test_migrations_create_every_table_and_are_idempotent(registry: Registry) -> None:
    migrate(registry.engine)  # second run is a no-op
    tables = set(inspect(registry.engine).get_table_names())
    assert {
        "models",
        "versions",
        "aliases",
        "alias_history",
        "api_keys",
        "audit_events",
        "changes",
        "version_files",
        "blob_pins",
        "registry_counters",
    } <= tables
    with registry.engine.connect() as conn:
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        assert (
            head is not None
            and conn.execute(text("select version_num from alembic_version")).scalar() == head
        )
        # the migrations produce exactly the schema the ORM tables describe
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    migrate(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_models_create_list_delete(registry: Registry) -> None:
    registry.models.create_model("iris", by="alice", description="flowers")
    with pytest.raises(Conflict):
        registry.models.create_model("iris", by="alice")
    assert [m.name for m in registry.models.list_models()] == ["iris"]
    assert registry.models.get_model("iris").created_by == "alice"
    add(registry)
    removed = registry.models.delete_model("iris")
    assert [r.version for r in removed] == [1]
    with pytest.raises(NotFound):
        registry.models.get_model("iris")


def test_versions_are_numbered_and_carry_their_manifest(registry: Registry) -> None:
    assert add(registry) == 1
    assert add(registry) == 2
    v = registry.models.get_version("iris", 2)
    assert v.state is VersionState.READY and v.manifest == (FILE,) and v.created_at.tzinfo is not None
    assert [x.version for x in registry.models.list_versions("iris", state=VersionState.READY)] == [1, 2]
    assert registry.blobs.referenced({"a" * 64, "f" * 64}) == {"a" * 64}
    with pytest.raises(NotFound):
        registry.models.get_version("iris", 3)


def test_concurrent_version_numbers_are_distinct(registry: Registry) -> None:
    registry.models.create_model("iris", by="t")
    numbers: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                v = registry.models.add_version(
                    "iris", sha256="c" * 64, size=1, manifest=[FILE], framework="sklearn", by="t"
                )
                numbers.append(v.version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(numbers) == list(range(1, 21))


def test_pending_versions_are_listed_for_recovery(registry: Registry) -> None:
    add(registry, state=VersionState.PENDING)
    add(registry)
    assert [(v.model, v.version) for v in registry.models.pending_versions()] == [("iris", 1)]


def test_alias_moves_and_rollback_walks_history_back(registry: Registry) -> None:
    for _ in range(3):
        add(registry)
    registry.aliases.set("iris", "production", 1, by="alice")
    registry.aliases.set("iris", "production", 2, by="bob")
    registry.aliases.set("iris", "production", 3, by="carol")
    assert registry.aliases.rollback("iris", "production", by="dave").version == 2
    assert registry.aliases.rollback("iris", "production", by="dave").version == 1
    with pytest.raises(Conflict):
        registry.aliases.rollback("iris", "production", by="dave")
    assert registry.aliases.find("iris", "production").version == 1  # type: ignore[union-attr]
    history = registry.aliases.history("iris", "production")
    assert [(h.version, h.action, h.by) for h in history] == [
        (1, "rollback", "dave"),
        (2, "rollback", "dave"),
        (3, "promote", "carol"),
        (2, "promote", "bob"),
        (1, "promote", "alice"),
    ]


def test_rollback_skips_deleted_versions(registry: Registry) -> None:
    for _ in range(3):
        add(registry)
    for v in (1, 2, 3):
        registry.aliases.set("iris", "production", v, by="t")
    registry.models.delete_version("iris", 2)
    assert registry.aliases.rollback("iris", "production", by="t").version == 1


def test_alias_refuses_failed_and_pending_versions(registry: Registry) -> None:
    add(registry, state=VersionState.FAILED)
    add(registry, state=VersionState.PENDING)
    for version in (1, 2):
        with pytest.raises(Conflict):
            registry.aliases.set("iris", "production", version, by="t")
    with pytest.raises(NotFound):
        registry.aliases.set("iris", "production", 9, by="t")


def test_version_with_alias_cannot_be_deleted(registry: Registry) -> None:
    add(registry)
    registry.aliases.set("iris", "staging", 1, by="t")
    with pytest.raises(Conflict, match="staging"):
        registry.models.delete_version("iris", 1)


def test_keys_are_found_by_hash_and_revoked(registry: Registry) -> None:
    registry.keys.create("ci", key_hash="h" * 64, prefix="mp_abc", scopes=["read", "write"])
    with pytest.raises(Conflict):
        registry.keys.create("ci", key_hash="i" * 64, prefix="mp_abc", scopes=["read"])
    found = registry.keys.find_by_hash("h" * 64)
    assert found is not None and found.scopes == {"read", "write"} and found.revoked_at is None
    assert registry.keys.revoke("ci").revoked_at is not None
    assert registry.keys.find_by_hash("h" * 64).revoked_at is not None  # type: ignore[union-attr]


def test_audit_is_appended_and_filtered(registry: Registry) -> None:
    registry.audit.record(actor="alice", action="version.push", target="iris/1")
    registry.audit.record(actor="bob", action="alias.set", target="iris@production", details={"version": 1})
    events = registry.audit.query()
    assert [e.action for e in events] == ["alias.set", "version.push"]
    assert events[0].details == {"version": 1}
    assert [e.actor for e in registry.audit.query(actor="alice")] == ["alice"]
    assert registry.audit.query(action="nothing") == []


def test_every_change_serving_follows_is_in_the_feed_in_order(registry: Registry) -> None:
    start = registry.changes.head()
    add(registry)  # model created, version added, state set
    registry.aliases.set("iris", "production", 1, by="t")
    registry.models.set_version_config("iris", 1, {"batching": {"max_queue": 5}})
    registry.models.set_unloaded("iris", True)
    registry.keys.create("ci", key_hash="h" * 64, prefix="mp_abc", scopes=["read"])
    registry.audit.record(actor="t", action="auth.denied", target="x", result="denied")  # not a change
    changes = registry.changes.since(start)
    assert changes is not None
    assert [c.seq for c in changes] == list(range(start + 1, start + 1 + len(changes)))
    assert registry.changes.head() == changes[-1].seq
    assert [(c.kind, c.model, c.version) for c in changes] == [
        (ChangeKind.MODEL_CREATED, "iris", None),
        (ChangeKind.VERSION_ADDED, "iris", 1),
        (ChangeKind.VERSION_STATE, "iris", 1),
        (ChangeKind.ALIAS_MOVED, "iris", 1),
        (ChangeKind.VERSION_CONFIG, "iris", 1),
        (ChangeKind.MODEL_UNLOADED, "iris", None),
        (ChangeKind.KEY_CHANGED, None, None),
    ]
    assert registry.changes.since(registry.changes.head()) == []


def test_a_failed_write_announces_nothing(registry: Registry) -> None:
    add(registry, state=VersionState.FAILED)
    head = registry.changes.head()
    with pytest.raises(Conflict):
        registry.aliases.set("iris", "production", 1, by="t")
    assert registry.changes.head() == head and registry.changes.since(head) == []


def test_unload_flag_and_metadata_are_stored(registry: Registry) -> None:
    add(registry)
    assert registry.models.set_unloaded("iris", True).unloaded
    assert registry.models.get_model("iris").unloaded
    assert not registry.models.set_unloaded("iris", False).unloaded
    registry.models.update_metadata("iris", 1, {"lineage": {"job": 7}})
    merged = registry.models.update_metadata("iris", 1, {"metrics": {"accuracy": 0.9}})
    assert merged.metadata == {"lineage": {"job": 7}, "metrics": {"accuracy": 0.9}}
    assert registry.models.get_version("iris", 1).metadata == merged.metadata


@pytest.mark.parametrize("number", [0, -1, 2**31, 2**63, 10**20])
def test_versions_beyond_the_column_range_are_not_found(registry: Registry, number: int) -> None:
    add(registry)
    with pytest.raises(NotFound):
        registry.models.get_version("iris", number)


def test_collect_spares_referenced_and_pinned_blobs(registry: Registry) -> None:
    add(registry)  # references "a" * 64
    pin = registry.blobs.pin(["c" * 64])
    deleted: list[str] = []
    assert registry.blobs.collect(["a" * 64, "c" * 64, "d" * 64], deleted.append) == ["d" * 64]
    assert deleted == ["d" * 64]
    registry.blobs.unpin(pin)
    assert registry.blobs.collect(["c" * 64], deleted.append) == ["c" * 64]
    registry.models.delete_version("iris", 1)
    assert registry.blobs.collect(["a" * 64], deleted.append) == ["a" * 64]


def test_pins_of_a_dead_push_expire_or_are_cleared_at_start(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from modelport.registry import blobs

    deleted: list[str] = []
    monkeypatch.setattr(blobs, "PIN_TTL", timedelta(seconds=-1))  # a pin taken long ago
    registry.blobs.pin(["e" * 64])
    assert registry.blobs.collect(["e" * 64], deleted.append) == ["e" * 64]
    monkeypatch.undo()
    registry.blobs.pin(["f" * 64])
    assert registry.blobs.collect(["f" * 64], deleted.append) == []
    registry.blobs.clear_pins()
    assert registry.blobs.collect(["f" * 64], deleted.append) == ["f" * 64]
    assert deleted == ["e" * 64, "f" * 64]


def test_concurrent_config_merges_keep_every_key(registry: Registry) -> None:
    add(registry)
    errors: list[BaseException] = []

    def merge(key: str) -> None:
        try:
            for i in range(10):
                registry.models.set_version_config("iris", 1, lambda c, k=key, n=i: {**c, k: n})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=merge, args=(k,)) for k in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert registry.models.get_version("iris", 1).config == {"a": 9, "b": 9, "c": 9}


def test_a_reader_ahead_of_the_feed_reloads_everything(registry: Registry) -> None:
    add(registry)
    assert registry.changes.since(registry.changes.head() + 5) is None  # e.g. the database was restored
