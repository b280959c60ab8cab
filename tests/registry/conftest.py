from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelport.registry import Registry
from modelport.registry.db import make_engine, migrate
from tests.pg import PostgresServer

_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database(f"registry_{next(_counter)}")


@pytest.fixture
def registry(database_url: str) -> Iterator[Registry]:
    engine = make_engine(database_url)
    migrate(engine)
    yield Registry(engine)
    engine.dispose()
