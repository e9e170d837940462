"""The audit log: who signed in (or tried), who made or removed users and
tokens, who started and cancelled runs, when and from where. Written by the
service and by the admin commands; read by admins (`/api/audit`, the admin
page's log). Entries hold names and addresses, never a secret."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from phalanx.store.db import Database
from phalanx.store.tables import AuditRow

LIMIT = 200  # entries a read returns by default


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    target: str | None
    address: str | None
    detail: str | None


class Audit:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        *,
        address: str | None = None,
        detail: str | None = None,
    ) -> None:
        row = AuditRow(
            at=datetime.now(UTC),
            actor=actor[:200],
            action=action[:50],
            target=target[:300] if target is not None else None,
            address=address[:100] if address is not None else None,
            detail=detail,
        )
        async with self.db.session() as s:
            s.add(row)
            await s.commit()

    async def recent(self, *, limit: int = LIMIT, action: str | None = None) -> list[AuditEntry]:
        """The newest entries first."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if action is not None:
            query = query.where(AuditRow.action == action)
        async with self.db.session() as s:
            return [
                AuditEntry(r.at, r.actor, r.action, r.target, r.address, r.detail)
                for r in await s.scalars(query)
            ]
