"""The schema: migrations make it from nothing and from an older revision,
a new database is made from the tables' metadata and stamped, a second
upgrade changes nothing, and each way gives what the tables declare."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from phalanx.store.db import Database
from phalanx.store.migrate import current, head, upgrade
from phalanx.store.store import Store
from phalanx.store.tables import Base

TABLES = {
    "suites",
    "runs",
    "case_results",
    "stages",
    "stage_results",
    "agents",
    "agent_tokens",
    "users",
    "user_tokens",
    "login_sessions",
    "audit_log",
}


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _declared_schema(db: Database) -> None:
    async with db.engine.connect() as connection:
        assert await connection.run_sync(_tables) >= TABLES
        assert await connection.run_sync(_differences) == []


async def test_migrations_build_the_schema_from_empty_and_a_second_upgrade_is_a_no_op(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        assert await current(db) is None
        first = await upgrade(db, replay=True)
        assert (first.before, first.after, first.changed) == (None, head(), True)
        # What the migrations made is what the tables module declares.
        await _declared_schema(db)
        again = await upgrade(db)
        assert (again.before, again.after, again.changed) == (head(), head(), False)
    finally:
        await db.close()


async def test_a_new_database_is_made_from_the_metadata_and_alembic_knows_its_revision(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        made = await upgrade(db)
        assert (made.before, made.after, made.changed) == (None, head(), True)
        await _declared_schema(db)
        assert await current(db) == head()  # read by Alembic itself
        again = await upgrade(db)
        assert (again.before, again.after, again.changed) == (head(), head(), False)
    finally:
        await db.close()


async def test_a_database_at_an_older_revision_is_migrated_and_keeps_its_rows(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        await upgrade(db, "0001")
        async with db.engine.begin() as connection:
            assert "audit_log" not in await connection.run_sync(_tables)
            await connection.exec_driver_sql(
                "INSERT INTO suites (name, updated_at) VALUES ('old', '2026-01-01 00:00:00+00')"
            )
        moved = await upgrade(db)
        assert (moved.before, moved.after) == ("0001", head())
        await _declared_schema(db)
        async with db.engine.connect() as connection:
            names = (await connection.exec_driver_sql("SELECT name FROM suites")).scalars()
            assert list(names) == ["old"]
    finally:
        await db.close()


async def test_opening_a_store_migrates_it(database_url: str, data_dir: Path) -> None:
    async with await Store.open(database_url, data_dir=data_dir) as store:
        assert store.upgraded is not None and store.upgraded.after == head()
    async with await Store.open(database_url, data_dir=data_dir) as store:
        assert store.upgraded is not None and not store.upgraded.changed


async def test_sqlite_runs_in_wal_mode_in_the_data_folder(data_dir: Path) -> None:
    from phalanx.store.db import default_url

    async with await Store.open(default_url(data_dir), data_dir=data_dir) as store:
        async with store.db.engine.connect() as connection:
            mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
        assert mode == "wal"
    assert (data_dir / "phalanx.db").is_file()
