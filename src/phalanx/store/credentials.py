"""Who may talk to the service: agent tokens, users, users' API tokens and
login sessions, as rows. Only hashes are stored and compared here; making
tokens and hashing them is `service/auth.py`'s job.

Agent tokens and user tokens live in separate tables, so one can never be
looked up as the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update

from phalanx.store.db import Database, rowcount
from phalanx.store.errors import Conflict, NotFound
from phalanx.store.tables import AgentTokenRow, LoginSessionRow, UserRow, UserTokenRow


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AgentTokenInfo:
    name: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class UserInfo:
    name: str
    role: str
    created_at: datetime
    tokens: int  # API tokens not revoked


@dataclass(frozen=True)
class UserRecord:
    name: str
    role: str
    password_hash: str


class Credentials:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- agent tokens ---------------------------------------------------------------

    async def add_agent_token(self, name: str, token_hash: str) -> None:
        """A token for agent `name`; one that is not revoked must not exist."""
        async with self.db.session() as s:
            active = await s.scalar(
                select(func.count())
                .select_from(AgentTokenRow)
                .where(AgentTokenRow.name == name, AgentTokenRow.revoked_at.is_(None))
            )
            if active:
                raise Conflict(f"agent {name!r} has a token already; revoke it first")
            s.add(AgentTokenRow(name=name, hash=token_hash, created_at=_now()))
            await s.commit()

    async def agent_tokens(self) -> list[AgentTokenInfo]:
        async with self.db.session() as s:
            rows = await s.scalars(
                select(AgentTokenRow).order_by(AgentTokenRow.name, AgentTokenRow.created_at)
            )
            return [AgentTokenInfo(r.name, r.created_at, r.revoked_at) for r in rows]

    async def revoke_agent_tokens(self, name: str) -> int:
        """Revoke agent `name`'s tokens; how many were live."""
        async with self.db.session() as s:
            done = await s.execute(
                update(AgentTokenRow)
                .where(AgentTokenRow.name == name, AgentTokenRow.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
            await s.commit()
            return rowcount(done)

    async def agent_for_hash(self, token_hash: str) -> str | None:
        """The agent a live token of this hash admits."""
        async with self.db.session() as s:
            return await s.scalar(
                select(AgentTokenRow.name).where(
                    AgentTokenRow.hash == token_hash, AgentTokenRow.revoked_at.is_(None)
                )
            )

    # --- users ----------------------------------------------------------------------

    async def add_user(self, name: str, role: str, password_hash: str) -> None:
        async with self.db.session() as s:
            if await s.get(UserRow, name) is not None:
                raise Conflict(f"user {name!r} exists already")
            s.add(UserRow(name=name, role=role, password_hash=password_hash, created_at=_now()))
            await s.commit()

    async def user(self, name: str) -> UserRecord | None:
        async with self.db.session() as s:
            row = await s.get(UserRow, name)
            return UserRecord(row.name, row.role, row.password_hash) if row is not None else None

    async def set_password_hash(self, name: str, password_hash: str) -> None:
        async with self.db.session() as s:
            await s.execute(
                update(UserRow).where(UserRow.name == name).values(password_hash=password_hash)
            )
            await s.commit()

    async def users(self) -> list[UserInfo]:
        live = (
            select(UserTokenRow.user.label("user_name"), func.count().label("n"))
            .where(UserTokenRow.revoked_at.is_(None))
            .group_by(UserTokenRow.user)
            .subquery()
        )
        query = (
            select(UserRow, func.coalesce(live.c.n, 0))
            .outerjoin(live, live.c.user_name == UserRow.name)
            .order_by(UserRow.name)
        )
        async with self.db.session() as s:
            return [
                UserInfo(row.name, row.role, row.created_at, int(tokens))
                for row, tokens in (await s.execute(query)).all()
            ]

    async def remove_user(self, name: str) -> None:
        """The user goes, and with them their API tokens and sessions."""
        async with self.db.session() as s:
            if await s.get(UserRow, name) is None:
                raise NotFound(f"no user {name!r}")
            await s.execute(delete(UserTokenRow).where(UserTokenRow.user == name))
            await s.execute(delete(LoginSessionRow).where(LoginSessionRow.user == name))
            await s.execute(delete(UserRow).where(UserRow.name == name))
            await s.commit()

    # --- users' API tokens ------------------------------------------------------------

    async def add_user_token(self, user: str, token_hash: str) -> None:
        async with self.db.session() as s:
            if await s.get(UserRow, user) is None:
                raise NotFound(f"no user {user!r}")
            s.add(UserTokenRow(user=user, hash=token_hash, created_at=_now()))
            await s.commit()

    async def revoke_user_tokens(self, user: str) -> int:
        async with self.db.session() as s:
            done = await s.execute(
                update(UserTokenRow)
                .where(UserTokenRow.user == user, UserTokenRow.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
            await s.commit()
            return rowcount(done)

    async def user_for_token_hash(self, token_hash: str) -> tuple[str, str] | None:
        """(user, role) of a live API token of this hash."""
        query = (
            select(UserRow.name, UserRow.role)
            .join(UserTokenRow, UserTokenRow.user == UserRow.name)
            .where(UserTokenRow.hash == token_hash, UserTokenRow.revoked_at.is_(None))
        )
        async with self.db.session() as s:
            found = (await s.execute(query)).first()
            return (found[0], found[1]) if found is not None else None

    # --- login sessions ---------------------------------------------------------------

    async def add_session(self, session_hash: str, user: str, expires_at: datetime) -> None:
        async with self.db.session() as s:
            if await s.get(UserRow, user) is None:
                raise NotFound(f"no user {user!r}")
            s.add(
                LoginSessionRow(
                    hash=session_hash, user=user, created_at=_now(), expires_at=expires_at
                )
            )
            await s.commit()

    async def session_user(
        self, session_hash: str, now: datetime | None = None
    ) -> tuple[str, str] | None:
        """(user, role) of a session of this hash that has not expired."""
        query = (
            select(UserRow.name, UserRow.role)
            .join(LoginSessionRow, LoginSessionRow.user == UserRow.name)
            .where(
                LoginSessionRow.hash == session_hash, LoginSessionRow.expires_at > (now or _now())
            )
        )
        async with self.db.session() as s:
            found = (await s.execute(query)).first()
            return (found[0], found[1]) if found is not None else None

    async def end_session(self, session_hash: str) -> None:
        async with self.db.session() as s:
            await s.execute(delete(LoginSessionRow).where(LoginSessionRow.hash == session_hash))
            await s.commit()

    async def prune_sessions(self, now: datetime | None = None) -> int:
        """Drop expired sessions; how many."""
        async with self.db.session() as s:
            done = await s.execute(
                delete(LoginSessionRow).where(LoginSessionRow.expires_at <= (now or _now()))
            )
            await s.commit()
            return rowcount(done)
