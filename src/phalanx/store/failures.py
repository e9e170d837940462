"""Database failures in one line each: a full disk, a lock another process
holds, a file that is not a database. Read from the exception alone (SQLite's
own error text, through SQLAlchemy's wrapper), so this imports no database
library and can be asked by anything that caught something.

A failing store fails every request and every write the same way: `Throttle`
keeps that to one line per kind of failure a minute, not one per request.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

# SQLite's messages (sqlite3 and aiosqlite raise them as they are) → what to say.
_KNOWN = (
    ("database or disk is full", "the disk under the database is full"),
    ("disk i/o error", "the disk under the database failed (or is full)"),
    ("database is locked", "the database is locked by another process"),
    # A WAL database's read locks held elsewhere (its log being recovered,
    # or a process holding them): no read can begin.
    ("locking protocol", "the database is locked by another process"),
    ("file is not a database", "the database file is not a database (damaged, or another file)"),
    ("database disk image is malformed", "the database file is damaged"),
    ("unable to open database file", "the database file cannot be opened"),
    ("attempt to write a readonly database", "the database is read-only"),
)
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def describe(exc: BaseException) -> str | None:
    """One line for a user about `exc`, or None when it is no database or
    disk failure (a bug, which deserves its traceback)."""
    for one in _chain(exc):
        if isinstance(one, OSError) and one.errno in _NO_SPACE:
            return f"no space left on the disk ({one.strerror or one})"
        text = str(one).lower()
        for words, line in _KNOWN:
            if words in text:
                return f"{line} ({words})"
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, what it wraps (SQLAlchemy's `orig`), its causes and, for an
    exception group, its members; each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        one = todo.pop()
        if id(one) in seen:
            continue
        seen.add(id(one))
        yield one
        orig = getattr(one, "orig", None)
        if isinstance(orig, BaseException):
            todo.append(orig)
        if isinstance(one, BaseExceptionGroup):
            todo.extend(one.exceptions)
        for linked in (one.__cause__, one.__context__):
            if linked is not None:
                todo.append(linked)


@dataclass
class Throttle:
    """Whether to log a failure now: the first of a kind at once, then at
    most one line per `every` seconds, saying how many were left out."""

    clock: Callable[[], float]
    every: float = 60.0
    _last: dict[str, float] = field(default_factory=dict)
    _left_out: dict[str, int] = field(default_factory=dict)

    def line(self, kind: str, text: str) -> str | None:
        """The line to log for this failure, or None to stay quiet."""
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.every:
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return None
        self._last[kind] = now
        left_out = self._left_out.pop(kind, 0)
        return f"{text} (and {left_out} more like it)" if left_out else text
