"""Agents that have connected: their labels, version and when last seen.
Who is connected now is the hub's to say (in memory); this is the record
that outlives a restart, for the API's list of agents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from phalanx.store.db import Database
from phalanx.store.tables import AgentRow


@dataclass(frozen=True)
class AgentState:
    name: str
    labels: tuple[str, ...]
    version: str | None
    last_seen: datetime


def _state(row: AgentRow) -> AgentState:
    return AgentState(row.name, tuple(row.labels or ()), row.version, row.last_seen)


class Agents:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def seen(
        self,
        name: str,
        *,
        labels: Sequence[str] = (),
        version: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record an agent's hello (or a later sign of life)."""
        values = {
            "name": name,
            "labels": list(labels),
            "version": version,
            "last_seen": at or datetime.now(UTC),
        }
        statement = self.db.insert(AgentRow).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["name"], set_={k: v for k, v in values.items() if k != "name"}
        )
        async with self.db.session() as s:
            await s.execute(statement)
            await s.commit()

    async def get(self, name: str) -> AgentState | None:
        async with self.db.session() as s:
            row = await s.get(AgentRow, name)
            return _state(row) if row is not None else None

    async def all(self) -> list[AgentState]:
        async with self.db.session() as s:
            return [_state(r) for r in await s.scalars(select(AgentRow).order_by(AgentRow.name))]
