"""Another process holding a WAL database's read locks, as a process in
the middle of recovering the database's write-ahead log does: SQLite
connections elsewhere cannot begin a read, and give up with "locking
protocol" after their busy timeout. A real lock (fcntl, on the bytes of
the `-shm` file that SQLite's WAL locking uses), in a process of its own,
ended with its process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

# SQLite's WAL locks in the -shm file: write, checkpoint, recover and the
# five read locks, one byte each from offset 120 (the byte after them is
# the one every open connection holds shared, and stays free).
WAL_LOCKS = (120, 8)

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, int(sys.argv[3]), int(sys.argv[2]))
print("held", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def wal_read_locks_held(database: Path) -> Iterator[None]:
    """While inside, another process holds `database`'s WAL locks."""
    start, length = WAL_LOCKS
    shm = Path(f"{database}-shm")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(shm), str(start), str(length)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held", "the lock was not taken"
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
