"""The store opens a new database, and one already at the newest schema,
without importing Alembic (part of `phalanx serve`'s start), and knows which
revision that is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from phalanx.store.migrate import HEAD, head

OPEN = """
import asyncio, sys
from phalanx.store.store import Store

async def main() -> None:
    store = await Store.open(sys.argv[1])
    print(store.upgraded.before, store.upgraded.after, "alembic" in sys.modules)
    await store.close()

asyncio.run(main())
"""


def test_the_known_head_is_alembics_head() -> None:
    assert head() == HEAD  # a new migration moves HEAD too


def _open(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", OPEN, url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_new_database_and_one_at_the_head_open_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'phalanx.db'}"
    assert _open(url) == f"None {HEAD} False"  # made from nothing: from the metadata
    assert _open(url) == f"{HEAD} {HEAD} False"  # already there: one query, no Alembic
