"""Host results into the database, many per commit.

A result must be committed before the agent is acked, and a commit is the
expensive part (about a millisecond through aiosqlite, whatever it holds;
a thousand rows in one executemany cost less). So callers that arrive
together share one transaction: `GroupCommit.submit` queues a record and
returns once the transaction that holds it has committed. With a thousand
agents reporting a stage at once that is a handful of commits, not a
thousand; a lone result still commits at once (nothing waits for company).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Table, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from phalanx.store.db import Database
from phalanx.store.tables import HostResultRow

R = TypeVar("R")

HOST_RESULTS = cast(Table, HostResultRow.__table__)
KEY = ("run_id", "stage_id", "host")
_CHUNK = 500  # rows per statement: well under SQLite's bound-variable limit


async def write_host_results(db: Database, rows: Sequence[dict[str, Any]]) -> list[bool]:
    """Insert or update `rows` (column-keyed, one per (run_id, stage_id,
    host)) in one transaction; for each, whether it was new. A key twice
    in `rows` is one row: the later values win."""
    created: list[bool] = []
    async with db.session() as s:
        known = await _existing(s, rows)
        fresh: list[dict[str, Any]] = []
        again: list[dict[str, Any]] = []
        for row in rows:
            key = (row["run_id"], row["stage_id"], row["host"])
            is_new = key not in known
            known.add(key)
            created.append(is_new)
            (fresh if is_new else again).append(row)
        insert = db.insert(HOST_RESULTS).on_conflict_do_nothing(index_elements=list(KEY))
        for start in range(0, len(fresh), _CHUNK):
            await s.execute(insert, fresh[start : start + _CHUNK])
        if again:
            await s.execute(_UPDATE, [_update_params(r) for r in again])
        await s.commit()
    return created


# What a result that comes again may change: not its key, nor the position
# the final result gave it.
_CHANGING = [c.name for c in HOST_RESULTS.columns if c.name not in ("id", "position", *KEY)]
_UPDATE = (
    update(HOST_RESULTS)
    .where(and_(*(HOST_RESULTS.c[k] == bindparam(f"k_{k}") for k in KEY)))
    .values({name: bindparam(f"v_{name}") for name in _CHANGING})
)


def _update_params(row: dict[str, Any]) -> dict[str, Any]:
    return {f"k_{k}": row[k] for k in KEY} | {f"v_{n}": row.get(n) for n in _CHANGING}


async def _existing(s: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Which of the rows' keys are stored already (one query per run and chunk)."""
    c = HOST_RESULTS.c
    by_run: dict[str, list[str]] = {}
    for row in rows:
        by_run.setdefault(row["run_id"], []).append(row["stage_id"])
    found: set[tuple[str, str, str]] = set()
    for run_id, stage_ids in by_run.items():
        unique = sorted(set(stage_ids))
        for start in range(0, len(unique), _CHUNK):
            query = select(c.run_id, c.stage_id, c.host).where(
                c.run_id == run_id, c.stage_id.in_(unique[start : start + _CHUNK])
            )
            found.update((r, st, h) for r, st, h in (await s.execute(query)).all())
    return found


class GroupCommit(Generic[R]):
    """Coalesces concurrent `submit`s into one `write` of a batch.

    `write` gets the queued items in order and returns one answer per item.
    If a batch fails, its items are written one by one, so one bad item (a
    result for a run that does not exist) fails only its own caller. A
    caller cancelled while it waits does not withdraw its item: it may be
    in a transaction already.
    """

    def __init__(self, write: Callable[[list[R]], Awaitable[list[bool]]]) -> None:
        self._write = write
        self._queue: list[tuple[R, asyncio.Future[bool]]] = []
        self._drain: asyncio.Task[None] | None = None

    async def submit(self, item: R) -> bool:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._run())
        return await asyncio.shield(future)

    async def _run(self) -> None:
        # Let every caller that is ready in this turn of the loop join the
        # first batch; later ones gather while it is being written.
        await asyncio.sleep(0)
        batch: list[tuple[R, asyncio.Future[bool]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._settle(batch)
        except BaseException:
            # Cancelled with the loop: no caller may wait forever.
            closed = RuntimeError("the store closed before the result was written")
            for _, future in batch + self._queue:
                if not future.done():
                    future.set_exception(closed)
            self._queue = []
            raise

    async def _settle(self, batch: list[tuple[R, asyncio.Future[bool]]]) -> None:
        try:
            answers = await self._write([item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1:
                for one in batch:
                    await self._settle([one])
                return
            if not batch[0][1].done():
                batch[0][1].set_exception(exc)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)

    async def flush(self) -> None:
        """Wait until everything submitted so far is written."""
        while self._drain is not None and not self._drain.done():
            await asyncio.shield(self._drain)
