"""The store's fixtures: a database URL and an open store, on SQLite (a
file in tmp_path) and on a real PostgreSQL server started for the session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from phalanx.store.db import default_url
from phalanx.store.store import Store
from tests.store.postgres import PostgresServer, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    yield from postgres_server()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, data_dir: Path) -> str:
    if request.param == "sqlite":
        return default_url(data_dir)
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
async def store(database_url: str, data_dir: Path) -> AsyncIterator[Store]:
    opened = await Store.open(database_url, data_dir=data_dir)
    try:
        yield opened
    finally:
        await opened.close()
