"""Suites' cron schedules: when each fires next, and a loop that fires them.

The arithmetic is APScheduler 3's `CronTrigger` (DESIGN names it, and the
loader validates a suite's `schedule` with it, so what loads is what fires).
The firing is our own asyncio loop, not APScheduler's `AsyncIOScheduler`:
that one brings a job store, executors and misfire bookkeeping we do not
need, its `shutdown()` does not wait for the coroutines it started, and the
set of suites changes with every catalog, which would mean adding and
removing jobs by id. Here the lifetime is one `async with`, a changed set is
one `update()`, and on exit no task is left.

Times are UTC. A fire time missed while the loop was not running (the
machine slept, the loop was busy) fires once, late, and the next time is
counted from then on: a coordinator back from a suspend does not queue a
run per missed minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from phalanx.load.schedule import parse_schedule

log = logging.getLogger(__name__)

Fire = Callable[[str], Awaitable[None]]

# The longest the loop sleeps before it looks at the wall clock again: cron
# times are wall-clock times, asyncio sleeps on the monotonic clock, and the
# two part ways when the system clock is set or the machine is suspended.
MAX_SLEEP = 30.0
# How long stopping lets a `fire` callback in flight finish before it is cancelled.
STOP_GRACE = 5.0


def trigger(schedule: Mapping[str, str] | str) -> Any:
    """The `CronTrigger` of a suite's schedule (cron fields, or a crontab line), in UTC."""
    from apscheduler.triggers.cron import CronTrigger

    fields = parse_schedule(schedule if isinstance(schedule, str) else dict(schedule))
    return CronTrigger(**fields, timezone="UTC")


def next_fire(schedule: Mapping[str, str] | str | Any, after: datetime) -> datetime | None:
    """The first fire time strictly after `after` (naive means UTC); None when
    the schedule never fires again (e.g. `year: 2001`).

    `schedule` is a suite's `schedule` (cron fields), a crontab line, or a
    `CronTrigger` made by `trigger()`."""
    cron = schedule if hasattr(schedule, "get_next_fire_time") else trigger(schedule)
    if after.tzinfo is None:
        after = after.replace(tzinfo=UTC)
    # Given as the previous fire time too, `after` itself is excluded.
    found: datetime | None = cron.get_next_fire_time(after, after)
    return None if found is None else found.astimezone(UTC)


@dataclass
class _Entry:
    fields: dict[str, str]
    cron: Any
    due: datetime | None


class Scheduler:
    """Calls `fire(suite_name)` at each scheduled suite's times.

    ::

        async with Scheduler(fire) as scheduler:
            scheduler.update({name: suite.schedule for name, suite in suites.items()})
            scheduler.next_runs()  # suite -> next fire time

    `update()` takes the whole current set each time (from a new catalog):
    a suite whose schedule did not change keeps its next time, a changed one
    is counted again from now, a missing one or one whose schedule is None
    stops firing. Each `fire` runs as its own task, so a slow one delays no
    other suite; one that raises is logged. On exit the loop stops, and
    `fire` calls still running get `stop_grace` seconds, then are cancelled.
    """

    def __init__(self, fire: Fire, *, stop_grace: float = STOP_GRACE) -> None:
        self._fire = fire
        self._stop_grace = stop_grace
        self._entries: dict[str, _Entry] = {}
        self._changed = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._firing: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Scheduler:
        self._loop_task = asyncio.create_task(self._run(), name="phalanx-scheduler")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._firing:
            _, pending = await asyncio.wait(self._firing, timeout=self._stop_grace)
            for left in pending:
                left.cancel()
            if pending:
                await asyncio.wait(pending)
        self._firing.clear()

    def update(self, schedules: Mapping[str, Mapping[str, str] | None]) -> None:
        """The suites to fire from now on, by name, with their cron fields."""
        now = _now()
        entries: dict[str, _Entry] = {}
        for name, schedule in schedules.items():
            if schedule is None:
                continue
            fields = dict(schedule)
            old = self._entries.get(name)
            if old is not None and old.fields == fields:
                entries[name] = old
                continue
            cron = trigger(fields)
            entries[name] = _Entry(fields, cron, next_fire(cron, now))
        self._entries = entries
        self._changed.set()

    def next_runs(self) -> dict[str, datetime]:
        """Each scheduled suite's next fire time (UTC); a schedule that never fires again is left out."""
        return {name: e.due for name, e in sorted(self._entries.items()) if e.due is not None}

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            now = _now()
            for name, entry in list(self._entries.items()):
                if entry.due is not None and entry.due <= now:
                    self._start(name)
                    # Counted from now, not from the missed time: see the module's doc.
                    entry.due = next_fire(entry.cron, max(now, entry.due))
            dues = [e.due for e in self._entries.values() if e.due is not None]
            wait = MAX_SLEEP
            if dues:
                wait = min(wait, max(0.0, (min(dues) - _now()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)

    def _start(self, name: str) -> None:
        task = asyncio.create_task(self._call(name), name=f"phalanx-fire-{name}")
        self._firing.add(task)
        task.add_done_callback(self._firing.discard)

    async def _call(self, name: str) -> None:
        try:
            await self._fire(name)
        except Exception:
            log.exception("starting the scheduled run of suite %r failed", name)


def _now() -> datetime:
    return datetime.now(UTC)
