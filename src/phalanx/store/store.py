"""The service's store: one database, opened and migrated, and its parts.

    store = await Store.open(url, data_dir=data_dir)   # migrates to the newest schema
    await store.runs.mark_interrupted()
    ...
    await store.close()

Everything here is SQLAlchemy, imported only by the service and its admin
commands: `phalanx run` keeps its results folder as its only record.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from phalanx.store.agents import Agents
from phalanx.store.audit import Audit
from phalanx.store.credentials import Credentials
from phalanx.store.db import Database
from phalanx.store.migrate import Upgrade, upgrade
from phalanx.store.runs import Runs
from phalanx.store.suites import Suites


class Store:
    """`runs` (results, retention), `suites` (definition errors), `agents`
    (last seen), `credentials` (token and password hashes, sessions),
    `audit` (who did what to access and runs)."""

    def __init__(self, db: Database, *, data_dir: Path | None = None) -> None:
        self.db = db
        self.runs = Runs(db, data_dir=data_dir)
        self.suites = Suites(db)
        self.agents = Agents(db)
        self.credentials = Credentials(db)
        self.audit = Audit(db)
        self.upgraded: Upgrade | None = None

    @classmethod
    async def open(cls, url: str, *, data_dir: Path | None = None, migrate: bool = True) -> Store:
        """Connect to `url` and (unless `migrate=False`) bring its schema to
        the newest revision; `data_dir` bounds what retention may delete."""
        store = cls(Database(url), data_dir=data_dir)
        if migrate:
            try:
                store.upgraded = await upgrade(store.db)
            except BaseException:
                await store.close()
                raise
        return store

    async def close(self) -> None:
        try:
            await self.runs.flush()
        finally:
            await self.db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
