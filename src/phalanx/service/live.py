"""A run the service is running: its fold and its store records, both made
from the run's events.

The service is one more consumer of a run's events, as the consoles are. A
`LiveRun` folds them into a `Board` (whose record the API document, the web
pages, their live updates and `phalanx submit --wait` read while the run
goes on) and writes each host's result to the store as the engine judged
it, when it ends; the agent is acked once that write has committed
(`durable`). Readers wait for a change (`changed`) instead of polling.
Nothing here looks at a wire message or judges anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from phalanx.board import Board
from phalanx.events import Event, HostStageEnded, RunEnded
from phalanx.store.runs import HostStageRecord, Runs

log = logging.getLogger("phalanx.service")

# How long an agent's ack may wait for the record of its result: past it the
# ack is not sent, and the agent resends the result after its next connect.
DURABLE_TIMEOUT = 30.0


class LiveRun:
    """One run's events in, its board and store rows out. Made when the run
    is queued; call it as a sink from the run's own event loop."""

    def __init__(self, run_id: str, runs: Runs) -> None:
        self.run_id = run_id
        self.runs = runs
        self.board = Board()
        self.version = 0  # rises with every event that changes what a reader sees
        self.ended = False
        self._waiter: asyncio.Future[None] | None = None
        self._writes: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, event: Event, /) -> None:
        self.board.apply(event)
        if isinstance(event, HostStageEnded):
            self._record(event)
        elif isinstance(event, RunEnded):
            self.ended = True
        self._bump()

    # --- the store --------------------------------------------------------------------

    def _record(self, event: HostStageEnded) -> None:
        record = HostStageRecord(
            run_id=self.run_id,
            stage_id=event.stage_id,
            case=event.case,
            stage=event.stage,
            result=event.result,
        )
        written = self._future(event.stage_id, event.result.host)
        task = asyncio.ensure_future(self._write(record, written))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, record: HostStageRecord, written: asyncio.Future[None]) -> None:
        try:
            await self.runs.record_stage_result(record)
        except Exception as exc:
            log.warning(
                "run %s: recording %s's result of %s failed: %s",
                self.run_id, record.result.host, record.stage, exc,
            )  # fmt: skip
            if not written.done():
                written.set_exception(exc)
            return
        if not written.done():
            written.set_result(None)

    def _future(self, stage_id: str, host: str) -> asyncio.Future[None]:
        key = (stage_id, host)
        if (found := self._writes.get(key)) is None:
            found = self._writes[key] = asyncio.get_running_loop().create_future()
            # Nobody may be waiting for it (a result the agent did not send:
            # a lost host's); its failure is logged in `_write`.
            found.add_done_callback(lambda f: f.cancelled() or f.exception())
        return found

    def durable(self, stage_id: str, host: str) -> Awaitable[None]:
        """Done once the record of `host`'s result of `stage_id` is in the
        store. The agent's result was just applied: the engine judges it and
        emits its record in the same turn of the loop or the next."""
        return asyncio.wait_for(asyncio.shield(self._future(stage_id, host)), DURABLE_TIMEOUT)

    async def flush(self) -> None:
        """Wait for the writes under way (before the run's final record)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        await self.runs.flush()

    # --- readers ----------------------------------------------------------------------

    def touch(self, *, ended: bool = False) -> None:
        """Something readers see changed outside the run's events: it left
        the queue, or ended there (`ended`)."""
        self.ended = self.ended or ended
        self._bump()

    def _bump(self) -> None:
        self.version += 1
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def changed(self, seen: int) -> int:
        """Wait until something happened after version `seen`; the version now."""
        while self.version == seen and not self.ended:
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)
        return self.version
