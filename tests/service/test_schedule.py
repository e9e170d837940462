"""Cron schedules: the next fire time, and the loop that fires suites (real time)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger

from phalanx.load.repo import load_repo
from phalanx.load.schedule import ScheduleError
from phalanx.service.definitions import build_catalog
from phalanx.service.schedule import Scheduler, next_fire
from tests.eventually import eventually_async

EVERY_SECOND = {"second": "*"}
NEVER_SOON = {"year": "2999"}


def test_next_fire_of_a_crontab_line_and_of_the_xrdtest_dict() -> None:
    after = datetime(2024, 5, 1, 10, 7, 30, tzinfo=UTC)
    assert next_fire("*/15 * * * *", after) == datetime(2024, 5, 1, 10, 15, tzinfo=UTC)
    assert next_fire({"hour": "3", "minute": "30"}, after) == datetime(
        2024, 5, 2, 3, 30, tzinfo=UTC
    )
    # strictly after: a fire time equal to `after` is the one already done
    on_time = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)
    assert next_fire("*/15 * * * *", on_time) == datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    # naive means UTC
    assert next_fire(EVERY_SECOND, datetime(2024, 5, 1, 10, 0, 0)) == datetime(
        2024, 5, 1, 10, 0, 1, tzinfo=UTC
    )
    assert next_fire({"year": "2001"}, after) is None


def test_a_bad_schedule_says_what_is_wrong() -> None:
    with pytest.raises(ScheduleError, match="5 fields"):
        next_fire("* * *", datetime.now(UTC))


async def test_a_one_second_schedule_fires_with_real_time() -> None:
    fired: list[tuple[str, datetime]] = []

    async def fire(name: str) -> None:
        fired.append((name, datetime.now(UTC)))

    async with Scheduler(fire) as scheduler:
        scheduler.update({"nightly": EVERY_SECOND, "idle": NEVER_SOON, "manual": None})
        await eventually_async(lambda: len(fired) >= 2, within=10, what="two fires")
    names = {name for name, _ in fired}
    assert names == {"nightly"}
    first, second = fired[0][1], fired[1][1]
    # two distinct fire times, not one fired twice
    assert first.replace(microsecond=0) < second.replace(microsecond=0)


async def test_next_runs_match_cron_trigger() -> None:
    async def fire(name: str) -> None:
        pass

    schedules = {"nightly": {"hour": "3", "minute": "0"}, "often": {"minute": "*/5"}}
    async with Scheduler(fire) as scheduler:
        before = datetime.now(UTC)
        scheduler.update(schedules)
        runs = scheduler.next_runs()
    assert set(runs) == {"nightly", "often"}
    for name, fields in schedules.items():
        expected = CronTrigger(**fields, timezone="UTC").get_next_fire_time(None, before)
        assert runs[name] == expected


async def test_a_changed_catalog_reschedules_and_a_removed_suite_stops_firing() -> None:
    fired: list[str] = []

    async def fire(name: str) -> None:
        fired.append(name)

    async with Scheduler(fire) as scheduler:
        scheduler.update({"a": NEVER_SOON, "b": EVERY_SECOND})
        unchanged = scheduler.next_runs()["a"]
        await eventually_async(lambda: "b" in fired, within=10, what="b fired")

        # a now fires every second; b is gone
        scheduler.update({"a": EVERY_SECOND})
        assert set(scheduler.next_runs()) == {"a"}
        assert scheduler.next_runs()["a"] < unchanged
        fired.clear()
        await eventually_async(lambda: fired.count("a") >= 2, within=10, what="a fired twice")
        assert "b" not in fired

        # the same schedule again keeps its time; a schedule removed stops it
        due = scheduler.next_runs()["a"]
        scheduler.update({"a": dict(EVERY_SECOND)})
        assert scheduler.next_runs()["a"] == due
        scheduler.update({"a": None})
        assert scheduler.next_runs() == {}
        await asyncio.sleep(0.05)  # a fire already started finishes first
        fired.clear()
        await asyncio.sleep(1.5)
        assert fired == []


async def test_a_failing_or_slow_fire_delays_no_one_and_no_task_is_left() -> None:
    fired: list[str] = []
    released = asyncio.Event()

    async def fire(name: str) -> None:
        fired.append(name)
        if name == "broken":
            raise RuntimeError("queue is full")
        if name == "slow":
            await released.wait()  # never set: cancelled at exit

    tasks_before = asyncio.all_tasks()
    scheduler = Scheduler(fire, stop_grace=0.2)
    scheduler.update({"broken": EVERY_SECOND, "slow": EVERY_SECOND, "fine": EVERY_SECOND})
    async with scheduler:
        await eventually_async(lambda: fired.count("fine") >= 2, within=10, what="fine fired twice")
    assert fired.count("broken") >= 2
    assert asyncio.all_tasks() == tasks_before


async def test_a_catalog_feeds_the_scheduler(tmp_path: Path) -> None:
    root = tmp_path / "defs"
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "one.yaml").write_text("name: one\nhosts: [{name: h1.t.test}]\n")
    for name, schedule in (("often", "{second: '*'}"), ("nightly", "'0 3 * * *'")):
        (root / "test-suites" / name / "tc" / "a").mkdir(parents=True)
        (root / "test-suites" / name / "tc" / "a" / "run.sh").write_text("true\n")
        (root / "test-suites" / name / "suite.yaml").write_text(
            f"cluster: one\nschedule: {schedule}\ntests: [a]\n"
        )
    (root / "test-suites" / "manual" / "tc" / "a").mkdir(parents=True)
    (root / "test-suites" / "manual" / "tc" / "a" / "run.sh").write_text("true\n")
    (root / "test-suites" / "manual" / "suite.yaml").write_text("cluster: one\ntests: [a]\n")
    catalog = build_catalog(load_repo(root), None, source="defs")
    fired: list[str] = []

    async def fire(name: str) -> None:
        fired.append(name)

    async with Scheduler(fire) as scheduler:
        scheduler.update(catalog.schedules())
        assert sorted(scheduler.next_runs()) == ["nightly", "often"]
        assert scheduler.next_runs()["nightly"].time() == time(3, 0)
        await eventually_async(lambda: "often" in fired, within=10, what="often fired")
