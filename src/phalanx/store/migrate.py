"""The store's schema: Alembic migrations, applied by the service at start
and by `phalanx db upgrade`.

Alembic runs on a connection handed to it (its "connection sharing"
recipe), so the migrations use the same async engine, URL handling and
SQLite pragmas as the store itself, and need no alembic.ini.

A database with no tables at all is not migrated step by step: its schema
is made from the tables' metadata in one transaction and stamped at HEAD
(Alembic's "create_all, then stamp" pattern), without loading Alembic. That
is a third of a second of a new data folder's first `phalanx serve`. The
tests hold the migrations and the metadata to the same schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.engine import Connection

from phalanx.store.db import Database
from phalanx.store.tables import Base

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPTS = Path(__file__).parent / "migrations"
# The newest revision in SCRIPTS (a test holds it to Alembic's own answer).
# A service starting on a database already there reads its revision with one
# query and leaves Alembic unimported: a tenth of a second of `phalanx serve`'s
# start, before it answers /healthz.
HEAD = "0003_case_history"

# Alembic's version table, as Alembic itself makes it: the stamp of a schema
# made from the metadata. Its own MetaData: it is no table of the store's.
_VERSION = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


@dataclass(frozen=True)
class Upgrade:
    """What an upgrade did: the revision before and after (None: empty)."""

    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    return config


def head() -> str | None:
    """The newest revision this phalanx knows."""
    from alembic.script import ScriptDirectory

    found: str | None = ScriptDirectory.from_config(_config()).get_current_head()
    return found


def _revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    found: str | None = MigrationContext.configure(connection).get_current_revision()
    return found


def _stamped(connection: Connection) -> str | None:
    """The revision in Alembic's version table, read without Alembic (None:
    no table, or not exactly one row: let Alembic look)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if len(rows) == 1 else None


def _create(connection: Connection) -> Upgrade:
    """The newest schema on an empty database, made from the metadata and
    stamped HEAD, in the caller's transaction."""
    Base.metadata.create_all(connection)
    _VERSION.create(connection)
    connection.execute(_VERSION.insert().values(version_num=HEAD))
    return Upgrade(None, HEAD)


def _upgrade(connection: Connection, target: str, replay: bool) -> Upgrade:
    if target == "head" and (stamped := _stamped(connection)) == HEAD:
        return Upgrade(stamped, stamped)
    if target == "head" and not replay and not inspect(connection).get_table_names():
        return _create(connection)
    from alembic import command

    before = _revision(connection)
    command.upgrade(_config(connection), target)
    return Upgrade(before, _revision(connection))


async def upgrade(db: Database, target: str = "head", *, replay: bool = False) -> Upgrade:
    """Bring the schema to `target` (default: the newest); a database
    already there is left as it is. An empty one brought to the newest is
    made from the metadata, unless `replay`: then every migration runs."""
    async with db.engine.begin() as connection:
        return await connection.run_sync(_upgrade, target, replay)


async def current(db: Database) -> str | None:
    """The database's revision (None: no schema yet)."""
    async with db.engine.connect() as connection:
        return await connection.run_sync(_revision)
