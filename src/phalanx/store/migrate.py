"""The store's schema: Alembic migrations, applied by the service at start
and by `phalanx db upgrade`.

Alembic runs on a connection handed to it (its "connection sharing"
recipe), so the migrations use the same async engine, URL handling and
SQLite pragmas as the store itself, and need no alembic.ini.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from phalanx.store.db import Database

SCRIPTS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class Upgrade:
    """What an upgrade did: the revision before and after (None: empty)."""

    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    return config


def head() -> str | None:
    """The newest revision this phalanx knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection, target: str) -> Upgrade:
    before = _revision(connection)
    command.upgrade(_config(connection), target)
    return Upgrade(before, _revision(connection))


async def upgrade(db: Database, target: str = "head") -> Upgrade:
    """Bring the schema to `target` (default: the newest); a database
    already there is left as it is."""
    async with db.engine.begin() as connection:
        return await connection.run_sync(_upgrade, target)


async def current(db: Database) -> str | None:
    """The database's revision (None: no schema yet)."""
    async with db.engine.connect() as connection:
        return await connection.run_sync(_revision)
