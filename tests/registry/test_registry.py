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
from modelport.registry import Registry, VersionState
from modelport.registry.db import MIGRATIONS, make_engine, migrate
from modelport.registry.records import FileEntry
from modelport.registry.tables import Base

FILE = FileEntry("model.skops", "a" * 64, 10)


def add(registry: Registry, model: str = "iris", state: VersionState = VersionState.READY) -> int:
    registry.ensure_model(model, by="t")
    v = registry.add_version(model, sha256="b" * 64, size=10, manifest=[FILE], framework="sklearn", by="t")
    if state is not VersionState.PENDING:
        registry.set_version_state(
            model, v.version, state, error="boom" if state is VersionState.FAILED else None
        )
    return v.version


def test_migrations_create_every_table_and_are_idempotent(registry: Registry) -> None:
    migrate(registry.engine)  # second run is a no-op
    tables = set(inspect(registry.engine).get_table_names())
    assert {"models", "versions", "aliases", "alias_history", "api_keys", "audit_events"} <= tables
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
    registry.create_model("iris", by="alice", description="flowers")
    with pytest.raises(Conflict):
        registry.create_model("iris", by="alice")
    assert [m.name for m in registry.list_models()] == ["iris"]
    assert registry.get_model("iris").created_by == "alice"
    add(registry)
    removed = registry.delete_model("iris")
    assert [r.version for r in removed] == [1]
    with pytest.raises(NotFound):
        registry.get_model("iris")


def test_versions_are_numbered_and_carry_their_manifest(registry: Registry) -> None:
    assert add(registry) == 1
    assert add(registry) == 2
    v = registry.get_version("iris", 2)
    assert v.state is VersionState.READY and v.manifest == (FILE,) and v.created_at.tzinfo is not None
    assert [x.version for x in registry.list_versions("iris", state=VersionState.READY)] == [1, 2]
    assert registry.referenced_digests() == {"a" * 64}
    with pytest.raises(NotFound):
        registry.get_version("iris", 3)


def test_concurrent_version_numbers_are_distinct(registry: Registry) -> None:
    registry.create_model("iris", by="t")
    numbers: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                v = registry.add_version("iris", sha256="c" * 64, size=1, manifest=[FILE], by="t")
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
    assert [(v.model, v.version) for v in registry.pending_versions()] == [("iris", 1)]


def test_alias_moves_and_rollback_walks_history_back(registry: Registry) -> None:
    for _ in range(3):
        add(registry)
    registry.set_alias("iris", "production", 1, by="alice")
    registry.set_alias("iris", "production", 2, by="bob")
    registry.set_alias("iris", "production", 3, by="carol")
    assert registry.rollback_alias("iris", "production", by="dave").version == 2
    assert registry.rollback_alias("iris", "production", by="dave").version == 1
    with pytest.raises(Conflict):
        registry.rollback_alias("iris", "production", by="dave")
    assert registry.find_alias("iris", "production").version == 1  # type: ignore[union-attr]
    history = registry.alias_history("iris", "production")
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
        registry.set_alias("iris", "production", v, by="t")
    registry.delete_version("iris", 2)
    assert registry.rollback_alias("iris", "production", by="t").version == 1


def test_alias_refuses_failed_and_pending_versions(registry: Registry) -> None:
    add(registry, state=VersionState.FAILED)
    add(registry, state=VersionState.PENDING)
    for version in (1, 2):
        with pytest.raises(Conflict):
            registry.set_alias("iris", "production", version, by="t")
    with pytest.raises(NotFound):
        registry.set_alias("iris", "production", 9, by="t")


def test_version_with_alias_cannot_be_deleted(registry: Registry) -> None:
    add(registry)
    registry.set_alias("iris", "staging", 1, by="t")
    with pytest.raises(Conflict, match="staging"):
        registry.delete_version("iris", 1)


def test_keys_are_found_by_hash_and_revoked(registry: Registry) -> None:
    registry.create_key("ci", key_hash="h" * 64, prefix="mp_abc", scopes=["read", "write"])
    with pytest.raises(Conflict):
        registry.create_key("ci", key_hash="i" * 64, prefix="mp_abc", scopes=["read"])
    found = registry.find_key("h" * 64)
    assert found is not None and found.scopes == {"read", "write"} and found.revoked_at is None
    assert registry.revoke_key("ci").revoked_at is not None
    assert registry.find_key("h" * 64).revoked_at is not None  # type: ignore[union-attr]
    registry.upsert_key("ci", key_hash="j" * 64, prefix="mp_new", scopes=["admin"])
    assert registry.find_key("j" * 64).scopes == {"admin"}  # type: ignore[union-attr]


def test_audit_is_appended_and_filtered(registry: Registry) -> None:
    registry.record_audit(actor="alice", action="version.push", target="iris/1")
    registry.record_audit(actor="bob", action="alias.set", target="iris@production", details={"version": 1})
    events = registry.list_audit()
    assert [e.action for e in events] == ["alias.set", "version.push"]
    assert events[0].details == {"version": 1}
    assert [e.actor for e in registry.list_audit(actor="alice")] == ["alice"]
    assert registry.list_audit(action="nothing") == []
