"""Alembic's environment for the store's migrations.

The service and `phalanx db upgrade` run them through `store/migrate.py`,
which hands over an open connection. The `alembic` command (for writing a
new revision: `alembic -x url=sqlite:///scratch.db revision --autogenerate
-m "…"` from this folder's parent, with `script_location` set) opens its own.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from phalanx.store.db import Database
from phalanx.store.tables import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def _render_item(kind: str, item: Any, _context: AutogenContext) -> str | Literal[False]:
    # A revision must not import the tables module (it changes, revisions
    # don't): write our column type as the plain type it stores.
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters a table by copying it: let future revisions say
        # `with op.batch_alter_table(...)` and work on both backends.
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_own_connection(url: str) -> None:
    db = Database(url)
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await db.close()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database: alembic -x url=URL …")
    asyncio.run(_run_own_connection(url))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them against a database")
run_migrations_online()
