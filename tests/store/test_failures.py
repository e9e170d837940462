"""Database failures told in one line: real SQLite errors (a full database,
a lock another connection or process holds, a file that is not a database), bare and
wrapped by SQLAlchemy; and the throttle that keeps a failing store to a
line a minute."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DatabaseError

from phalanx.store.failures import Throttle, describe
from tests.store.locks import wal_read_locks_held


def test_a_full_database_is_told_as_a_full_disk(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "full.db")
    con.execute("CREATE TABLE t (x BLOB)")
    con.execute("PRAGMA max_page_count = 8")  # as if the disk had room for 8 pages
    with pytest.raises(sqlite3.OperationalError) as caught:
        for _ in range(100):
            con.execute("INSERT INTO t VALUES (zeroblob(4096))")
    con.close()
    why = describe(caught.value)
    assert why is not None and "disk under the database is full" in why


def test_a_lock_held_elsewhere_is_told_as_a_lock(tmp_path: Path) -> None:
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(tmp_path / "locked.db", timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as caught:
            other.execute("INSERT INTO t VALUES (1)")
    finally:
        other.close()
        holder.close()
    assert describe(caught.value) == (
        "the database is locked by another process (database is locked)"
    )


def test_wal_locks_held_elsewhere_are_told_as_a_lock(tmp_path: Path) -> None:
    database = tmp_path / "wal.db"
    reader = sqlite3.connect(database, isolation_level=None, timeout=0)
    reader.execute("PRAGMA journal_mode=WAL")
    reader.execute("CREATE TABLE t (x)")
    try:
        with wal_read_locks_held(database), pytest.raises(sqlite3.OperationalError) as caught:
            reader.execute("SELECT * FROM t").fetchall()
    finally:
        reader.close()
    assert describe(caught.value) == (
        "the database is locked by another process (locking protocol)"
    )


def test_a_file_that_is_not_a_database_through_sqlalchemy(tmp_path: Path) -> None:
    file = tmp_path / "phalanx.db"
    file.write_bytes(b"this is no SQLite file, whatever its name says" * 100)
    engine = create_engine(f"sqlite:///{file}")
    try:
        with pytest.raises(DatabaseError) as caught, engine.connect() as connection:
            connection.execute(text("SELECT * FROM sqlite_master"))
    finally:
        engine.dispose()
    why = describe(caught.value)
    assert why is not None and "not a database" in why


def test_no_space_from_the_file_system_and_what_is_no_database_failure() -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    assert describe(full) == "no space left on the disk (No space left on device)"
    try:
        try:
            raise full
        except OSError as exc:
            raise RuntimeError("writing results.json failed") from exc
    except RuntimeError as wrapped:
        assert describe(wrapped) == describe(full)
    assert describe(ExceptionGroup("runs", [ValueError("x"), full])) == describe(full)
    assert describe(ValueError("a bug")) is None
    assert describe(OSError(errno.EACCES, "Permission denied")) is None


def test_the_throttle_says_a_kind_once_a_minute_with_a_count() -> None:
    now = [0.0]
    throttle = Throttle(lambda: now[0], every=60)
    assert throttle.line("full", "disk full") == "disk full"
    assert throttle.line("locked", "locked") == "locked"  # another kind: at once
    for _ in range(1000):
        now[0] += 0.03
        assert throttle.line("full", "disk full") is None
    now[0] = 61.0
    assert throttle.line("full", "disk full") == "disk full (and 1000 more like it)"
    assert throttle.line("full", "disk full") is None
