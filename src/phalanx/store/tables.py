"""The service's tables (SQLAlchemy 2 declarative). The schema itself is
made by the migrations (`store/migrations/`); a change here needs one.

Runs do not reference suites by a foreign key: a suite may leave its
definitions repo while its runs stay to be read. Everything a run owns
(cases, stages, host results) goes with it (`ON DELETE CASCADE`, and the
store deletes them explicitly too, so SQLite without foreign keys is safe).

Secrets are never stored: tokens and session ids as their sha256, passwords
as argon2 hashes (see `service/auth.py` for why each).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on every backend. SQLite keeps no
    zone: it stores the UTC wall time, which also sorts and compares right."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SuiteRow(Base):
    """A suite the service knows, and its definition's last error."""

    __tablename__ = "suites"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    repo: Mapped[str | None] = mapped_column(String(200))
    definition_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_suite_queued_at", "suite", "queued_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    suite: Mapped[str] = mapped_column(String(200))
    cluster: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(String(200))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hosts: Mapped[list[str]] = mapped_column(JSON)
    definition: Mapped[Any] = mapped_column(JSON, nullable=True)
    folder: Mapped[str | None] = mapped_column(Text)


class CaseRow(Base):
    __tablename__ = "case_results"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The case's operation history and its check's verdict (codec.encode).
    history: Mapped[Any] = mapped_column(JSON, nullable=True)


class StageRow(Base):
    """A stage of a case (or of the suite, `case` NULL) as a whole."""

    __tablename__ = "stages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    case: Mapped[str | None] = mapped_column("case_name", String(200))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class HostResultRow(Base):
    """One host's result of one stage: written when it arrives, before the
    agent is acked; one row per (run, stage_id, host) however often it comes."""

    __tablename__ = "stage_results"
    __table_args__ = (UniqueConstraint("run_id", "stage_id", "host"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    stage_id: Mapped[str] = mapped_column(String(300))
    host: Mapped[str] = mapped_column(String(255))
    case: Mapped[str | None] = mapped_column("case_name", String(200))
    stage: Mapped[str] = mapped_column(String(100))
    position: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    signal: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[Any] = mapped_column(JSON, nullable=True)
    output: Mapped[str | None] = mapped_column(Text)  # relative to the run folder
    logs: Mapped[list[str]] = mapped_column(JSON)  # relative to the run folder
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AgentRow(Base):
    """An agent that has connected at least once."""

    __tablename__ = "agents"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    labels: Mapped[list[str]] = mapped_column(JSON)
    version: Mapped[str | None] = mapped_column(String(100))
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)


class AgentTokenRow(Base):
    __tablename__ = "agent_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), index=True)  # the agent it admits
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserRow(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UserTokenRow(Base):
    __tablename__ = "user_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(
        "user_name", ForeignKey("users.name", ondelete="CASCADE"), index=True
    )
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginSessionRow(Base):
    __tablename__ = "login_sessions"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(
        "user_name", ForeignKey("users.name", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AuditRow(Base):
    """Who did what to access and runs: logins (also failed and refused
    ones), users and tokens made or removed, runs started and cancelled.
    Never a secret: names, addresses and what was done only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(200))  # a user, `cli:<os user>`, `schedule`
    action: Mapped[str] = mapped_column(String(50), index=True)  # e.g. login.failed, run.start
    target: Mapped[str | None] = mapped_column(String(300))  # the user, agent, suite or run
    address: Mapped[str | None] = mapped_column(String(100))  # where a request came from
    detail: Mapped[str | None] = mapped_column(Text)
