"""The service's database: an async engine and its sessions.

SQLite (through aiosqlite) is the default, a file in the data folder; any
PostgreSQL server is one `database_url` away (through asyncpg). Every URL
is normalized to its async driver, so a user may write the plain
`postgresql://…` or `sqlite:///…` they know.

SQLite runs in WAL mode with `synchronous=NORMAL`: a commit is durable
against a crash of the process (what a `kill -9`d coordinator needs: a
result written before it is acked is there after a restart) and costs no
fsync, which is what lets it take thousands of stage results a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Result, event
from sqlalchemy.engine import URL, CursorResult, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

DB_FILE = "phalanx.db"

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def default_url(data_dir: Path) -> str:
    """The SQLite file in the data folder."""
    return f"sqlite+aiosqlite:///{(data_dir / DB_FILE).absolute()}"


def async_url(url: str) -> URL:
    """`url` with its async driver; a URL that names a driver keeps it."""
    parsed = make_url(url)
    if "+" not in parsed.drivername and parsed.drivername in _DRIVERS:
        parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    return parsed


def safe_url(url: str) -> str:
    """`url` fit for a log line: its password masked."""
    return async_url(url).render_as_string(hide_password=True)


def rowcount(result: Result[Any]) -> int:
    """How many rows an INSERT, UPDATE or DELETE touched."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def _json(value: Any) -> str:
    # orjson writes NaN as null where json.dumps writes NaN, which PostgreSQL
    # refuses; and it is what results.json is written with, so a stored
    # document reads back as the file does.
    return orjson.dumps(value).decode()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Several sessions may write at once (results of many runs, the admin
    # commands beside a running service): wait for the lock, don't fail.
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Database:
    """An engine and a session factory for one database URL.

    Sessions come from `session()`: `async with db.session() as s: …;
    await s.commit()`. `expire_on_commit` is off, so rows read in a session
    stay readable after it commits.
    """

    def __init__(self, url: str) -> None:
        parsed = async_url(url)
        self.url = parsed
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            # The data folder holds the credentials' hashes: its owner's only.
            Path(parsed.database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(
            parsed, json_serializer=_json, pool_pre_ping=not self.is_sqlite
        )
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.session = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    async def close(self) -> None:
        await self.engine.dispose()

    def insert(self, table: Any) -> Any:
        """The dialect's INSERT, which knows `on_conflict_do_nothing`/`_update`
        (both SQLite and PostgreSQL spell it the same)."""
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table)
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
