"""The admin commands as an admin types them (real processes), checked
against what the service will verify with."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from phalanx.service.auth import AGENT_PREFIX, USER_PREFIX, Auth, Principal, Role
from phalanx.service.config import load_config
from phalanx.store.migrate import head
from phalanx.store.store import Store
from tests.store.postgres import PostgresServer

T = TypeVar("T")
PASSWORD = "a long enough password"


def phalanx(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    return subprocess.run(
        [sys.executable, "-m", "phalanx.cli", *args],
        cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120,
        env=clean | (env or {}),
    )  # fmt: skip


def with_auth(config: Path, work: Callable[[Auth], Awaitable[T]]) -> T:
    """Do `work` with the service's credentials, as the service would open them."""
    loaded = load_config(config)

    async def main() -> T:
        async with await Store.open(loaded.database(), data_dir=loaded.data_dir) as store:
            return await work(Auth(store.credentials))

    return asyncio.run(main())


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "phalanx.toml"
    path.write_text('data_dir = "service-data"\n')
    return path


def test_db_upgrade_makes_the_schema_once(tmp_path: Path) -> None:
    first = phalanx("db", "upgrade", "--data", "d", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"upgraded from an empty database to {head()}" in first.stderr
    assert (tmp_path / "d" / "phalanx.db").is_file()
    again = phalanx("db", "upgrade", "--data", "d", cwd=tmp_path)
    assert again.returncode == 0 and f"up to date (revision {head()})" in again.stderr


def test_agent_tokens_are_made_listed_and_revoked(tmp_path: Path, config: Path) -> None:
    made = phalanx("token", "create", "srv1.lab.test", "--config", str(config), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith(AGENT_PREFIX) and token not in made.stderr
    assert (tmp_path / "service-data" / "phalanx.db").is_file()
    assert with_auth(config, lambda a: a.verify_agent_token(token)) == "srv1.lab.test"

    twice = phalanx("token", "create", "srv1.lab.test", "--config", str(config), cwd=tmp_path)
    assert twice.returncode == 2 and "has a token already" in twice.stderr

    listed = phalanx("token", "list", "--config", str(config), cwd=tmp_path)
    header, row = listed.stdout.splitlines()
    assert header.split() == ["agent", "created", "revoked"]
    assert row.startswith("srv1.lab.test") and row.endswith("-") and token not in listed.stdout

    revoked = phalanx("token", "revoke", "srv1.lab.test", "--config", str(config), cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert with_auth(config, lambda a: a.verify_agent_token(token)) is None
    listed = phalanx("token", "list", "--config", str(config), cwd=tmp_path)
    assert listed.stdout.splitlines()[1].endswith("UTC")
    gone = phalanx("token", "revoke", "srv1.lab.test", "--config", str(config), cwd=tmp_path)
    assert gone.returncode == 2 and "no live token" in gone.stderr


def test_users_with_a_password_from_stdin_and_api_tokens(tmp_path: Path, config: Path) -> None:
    added = phalanx(
        "user", "add", "alice", "--role", "operator", "--config", str(config),
        cwd=tmp_path, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    assert with_auth(config, lambda a: a.verify_password("alice", PASSWORD)) == Principal(
        "alice", Role.OPERATOR
    )
    assert with_auth(config, lambda a: a.verify_password("alice", "a wrong password")) is None

    made = phalanx("user", "token", "alice", "--config", str(config), cwd=tmp_path)
    token = made.stdout.strip()
    assert made.returncode == 0 and token.startswith(USER_PREFIX)
    assert with_auth(config, lambda a: a.verify_user_token(token)) == ("alice", Role.OPERATOR)
    # A user's token is no agent's.
    assert with_auth(config, lambda a: a.verify_agent_token(token)) is None

    listed = phalanx("user", "list", "--config", str(config), cwd=tmp_path)
    assert listed.stdout.splitlines()[1].split()[:3] == ["alice", "operator", "1"]

    short = phalanx(
        "user", "add", "bob", "--role", "viewer", "--config", str(config),
        cwd=tmp_path, stdin="short\n",
    )  # fmt: skip
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    bad_role = phalanx("user", "add", "bob", "--role", "root", "--data", "d", cwd=tmp_path)
    assert bad_role.returncode == 2 and "invalid choice" in bad_role.stderr

    removed = phalanx("user", "remove", "alice", "--config", str(config), cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert with_auth(config, lambda a: a.verify_user_token(token)) is None
    again = phalanx("user", "remove", "alice", "--config", str(config), cwd=tmp_path)
    assert again.returncode == 2 and "no user 'alice'" in again.stderr


def test_the_commands_work_on_postgresql(tmp_path: Path, postgres: PostgresServer) -> None:
    path = tmp_path / "phalanx.toml"
    url = postgres.new_database()
    path.write_text(f'data_dir = "data"\ndatabase_url = "{url}"\n')
    made = phalanx("token", "create", "srv2", "--config", str(path), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert with_auth(path, lambda a: a.verify_agent_token(made.stdout.strip())) == "srv2"
    assert not (tmp_path / "data" / "phalanx.db").exists()


def test_an_unreachable_database_is_an_infrastructure_error(tmp_path: Path) -> None:
    done = phalanx(
        "token", "list", cwd=tmp_path,
        env={"PHALANX_DATABASE_URL": "postgresql://phalanx:pw-not-shown@127.0.0.1:1/x"},
    )  # fmt: skip
    assert done.returncode == 3
    assert done.stderr.startswith("error: cannot use the database:")
    assert "pw-not-shown" not in done.stderr
