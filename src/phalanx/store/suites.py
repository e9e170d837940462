"""The suites the service knows, and the last error of each one's definition.

A suite's row is what the API lists even while its definition is broken: the
loaded definition itself lives in the service's memory (and a snapshot of it
in every run), not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select

from phalanx.store.db import Database
from phalanx.store.tables import SuiteRow


@dataclass(frozen=True)
class SuiteState:
    name: str
    repo: str | None
    definition_error: str | None  # None: the definition loaded
    updated_at: datetime


def _state(row: SuiteRow) -> SuiteState:
    return SuiteState(row.name, row.repo, row.definition_error, row.updated_at)


class Suites:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def set(self, name: str, *, repo: str | None, definition_error: str | None) -> None:
        """Record that `name` (from definitions repo `repo`) loaded, or why not."""
        values = {
            "name": name,
            "repo": repo,
            "definition_error": definition_error,
            "updated_at": datetime.now(UTC),
        }
        statement = self.db.insert(SuiteRow).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["name"],
            set_={k: v for k, v in values.items() if k != "name"},
        )
        async with self.db.session() as s:
            await s.execute(statement)
            await s.commit()

    async def forget(self, names: Iterable[str]) -> None:
        """Suites gone from their repo (their runs stay)."""
        names = list(names)
        if not names:
            return
        async with self.db.session() as s:
            await s.execute(delete(SuiteRow).where(SuiteRow.name.in_(names)))
            await s.commit()

    async def get(self, name: str) -> SuiteState | None:
        async with self.db.session() as s:
            row = await s.get(SuiteRow, name)
            return _state(row) if row is not None else None

    async def all(self) -> list[SuiteState]:
        async with self.db.session() as s:
            return [_state(r) for r in await s.scalars(select(SuiteRow).order_by(SuiteRow.name))]
