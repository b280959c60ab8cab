"""Alias deletion and names, the last admin key, audit filters and migration 0007, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from modelport.errors import Conflict, InvalidName, NotFound
from modelport.registry import ChangeKind, Registry
from modelport.registry.db import MIGRATIONS, make_engine, utcnow
from tests.registry.test_registry import add


def test_delete_alias_announces_a_move_and_keeps_history(registry: Registry) -> None:
    add(registry)
    add(registry)
    registry.aliases.set("iris", "staging", 1, by="a")
    registry.aliases.set("iris", "staging", 2, by="a")
    head = registry.changes.head()
    removed = registry.aliases.delete("iris", "staging", by="b")
    assert removed.version == 2 and registry.aliases.find("iris", "staging") is None
    changes = registry.changes.since(head)
    assert [(c.kind, c.model, c.version) for c in changes or []] == [(ChangeKind.ALIAS_MOVED, "iris", 2)]
    history = registry.aliases.history("iris", "staging")
    assert [(h.action, h.version, h.by) for h in history] == [
        ("delete", 2, "b"),
        ("promote", 2, "a"),
        ("promote", 1, "a"),
    ]
    registry.models.delete_version("iris", 2)  # nothing points at it any more
    with pytest.raises(NotFound):
        registry.aliases.delete("iris", "staging", by="b")
    registry.aliases.set("iris", "staging", 1, by="c")
    with pytest.raises(Conflict):  # the old stack is gone: nothing earlier to roll back to
        registry.aliases.rollback("iris", "staging", by="c")


def test_all_digit_alias_names_are_refused(registry: Registry) -> None:
    add(registry)
    with pytest.raises(InvalidName, match="all digits"):
        registry.aliases.set("iris", "7", 1, by="t")
    assert registry.aliases.set("iris", "v7", 1, by="t").name == "v7"


def test_the_last_active_admin_key_is_kept_unless_allowed(registry: Registry) -> None:
    registry.keys.create("admin", key_hash="a" * 64, prefix="mp_a", scopes=["admin"])
    registry.keys.create("reader", key_hash="r" * 64, prefix="mp_r", scopes=["read"])
    past = utcnow() - timedelta(days=1)
    registry.keys.create("old", key_hash="o" * 64, prefix="mp_o", scopes=["admin"])
    with registry.engine.begin() as conn:  # expired: no longer counts as an admin
        conn.execute(text("UPDATE api_keys SET expires_at = :at WHERE name = 'old'"), {"at": past})
    assert [k.name for k in registry.keys.active_admins()] == ["admin"]
    with pytest.raises(Conflict, match="last active admin key"):
        registry.keys.revoke("admin")
    assert registry.keys.revoke("reader").revoked_at is not None  # other keys are not held back
    registry.keys.create("second", key_hash="s" * 64, prefix="mp_s", scopes=["admin", "read"])
    assert registry.keys.revoke("admin").revoked_at is not None
    with pytest.raises(Conflict):
        registry.keys.revoke("second")
    assert registry.keys.revoke("second", allow_last_admin=True).revoked_at is not None
    assert registry.keys.active_admins() == []
    assert registry.keys.revoke("second").revoked_at is not None  # revoking again stays a no-op


def test_audit_filters_by_model_and_pages_with_before(registry: Registry) -> None:
    for target in ("iris", "iris/1", "iris@prod", "iris_x/1", "irisx", "iris-2/1", "ci"):
        registry.audit.record(actor="t", action="x", target=target)
    assert [e.target for e in registry.audit.query(model="iris")] == ["iris@prod", "iris/1", "iris"]
    assert [e.target for e in registry.audit.query(model="iris_x")] == ["iris_x/1"]
    newest = registry.audit.query(limit=3)
    older = registry.audit.query(limit=3, before=newest[-1].id)
    assert [e.target for e in newest + older] == [
        "ci",
        "iris-2/1",
        "irisx",
        "iris_x/1",
        "iris@prod",
        "iris/1",
    ]
    assert [e.target for e in registry.audit.query(model="iris", before=older[-1].id)] == ["iris"]


def test_migration_0007_renames_all_digit_aliases_with_their_history(database_url: str) -> None:
    engine = make_engine(database_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (id, name, description, created_at, created_by, unloaded, last_version) "
                "VALUES (1, 'iris', '', :at, 't', false, 3), (2, 'other', '', :at, 't', false, 3)"
            ),
            {"at": now},
        )
        aliases = [(1, "7", 1), (1, "alias-7", 2), (1, "production", 3), (2, "2", 1), (2, "9" * 60, 1)]
        for model_id, name, version in aliases:
            conn.execute(
                text(
                    "INSERT INTO aliases (model_id, name, version, updated_at, updated_by) "
                    "VALUES (:m, :n, :v, :at, 't')"
                ),
                {"m": model_id, "n": name, "v": version, "at": now},
            )
            conn.execute(
                text(
                    "INSERT INTO alias_history (model_id, alias, version, action, undone, at, by) "
                    "VALUES (:m, :n, :v, 'promote', false, :at, 't')"
                ),
                {"m": model_id, "n": name, "v": version, "at": now},
            )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    registry = Registry(engine)
    assert {a.name: a.version for a in registry.aliases.of_model("iris")} == {
        "alias-7-2": 1,
        "alias-7": 2,
        "production": 3,
    }
    other = {a.name: a.version for a in registry.aliases.of_model("other")}
    assert other == {"alias-2": 1, ("alias-" + "9" * 60)[:63]: 1}
    assert [h.version for h in registry.aliases.history("iris", "alias-7-2")] == [1]
    assert [h.version for h in registry.aliases.history("other", "alias-2")] == [1]
    with pytest.raises(NotFound):
        registry.aliases.history("iris", "7")
    engine.dispose()


def test_concurrent_revocations_never_remove_every_admin_key(registry: Registry) -> None:
    import threading

    for name in ("a1", "a2", "a3"):
        registry.keys.create(name, key_hash=name * 32, prefix="mp_x", scopes=["admin"])
    outcomes: list[str] = []
    barrier = threading.Barrier(3)

    def revoke(name: str) -> None:
        barrier.wait()
        try:
            registry.keys.revoke(name)
            outcomes.append("revoked")
        except Conflict:
            outcomes.append("kept")

    threads = [threading.Thread(target=revoke, args=(n,)) for n in ("a1", "a2", "a3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["kept", "revoked", "revoked"]
    assert len(registry.keys.active_admins()) == 1
