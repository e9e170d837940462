"""Runs in the store, on SQLite and on PostgreSQL: results written once
however often they come, the results.json document back as it went in,
runs a killed coordinator left, retention."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from phalanx.codec import iso
from phalanx.model import CaseResult, HostResult, RunResult, StageResult, Status
from phalanx.report.json import to_json
from phalanx.store.errors import NotFound
from phalanx.store.runs import HostStageRecord, Retention
from phalanx.store.store import Store
from phalanx.store.tables import HostResultRow

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def host(name: str, status: Status, start: float, **fields: object) -> HostResult:
    return HostResult(
        host=name,
        status=status,
        started_at=at(start),
        ended_at=at(start + 1),
        **fields,  # type: ignore[arg-type]
    )


def a_result(run_id: str = "20240501-120000-abcdef") -> RunResult:
    """A run with a bit of everything: suite stages, a passed and a failed
    case, a skipped stage, data of every JSON shape, logs, no-output hosts."""
    hosts = ["srv1.lab.test", "cli1.lab.test"]

    def stage(name: str, status: Status, start: float, *per_host: HostResult) -> StageResult:
        return StageResult(
            name=name, status=status, hosts=list(per_host), started_at=at(start),
            ended_at=at(start + 1),
        )  # fmt: skip

    greet = CaseResult(
        name="greet",
        status=Status.PASSED,
        started_at=at(1),
        ended_at=at(4),
        stages=[
            stage("initialize", Status.PASSED, 1, host("srv1.lab.test", Status.PASSED, 1,
                  exit_code=0), host("cli1.lab.test", Status.PASSED, 1, exit_code=0)),
            stage("run", Status.PASSED, 2,
                  host("srv1.lab.test", Status.PASSED, 2, exit_code=0,
                       output="cases/greet/run/srv1.lab.test.log",
                       logs=["cases/greet/run/logs/srv1.lab.test/var_log_x.log"],
                       data={"final_results": [{"n": 1, "ok": True, "ratio": 0.5, "none": None}],
                             "big": 2**70}),
                  host("cli1.lab.test", Status.PASSED, 2, exit_code=0)),
            stage("finalize", Status.PASSED, 3, host("srv1.lab.test", Status.PASSED, 3,
                  exit_code=0), host("cli1.lab.test", Status.PASSED, 3, exit_code=0)),
        ],
    )  # fmt: skip
    broken = CaseResult(
        name="broken",
        status=Status.FAILED,
        reason="initialize: srv1.lab.test exited 3",
        started_at=at(5),
        ended_at=at(7),
        stages=[
            stage("initialize", Status.FAILED, 5,
                  host("srv1.lab.test", Status.FAILED, 5, exit_code=3, reason="exited 3"),
                  host("cli1.lab.test", Status.PASSED, 5, exit_code=0)),
            StageResult(name="run", status=Status.SKIPPED, hosts=[
                HostResult(host="srv1.lab.test", status=Status.SKIPPED,
                           reason="case initialize did not pass"),
                HostResult(host="cli1.lab.test", status=Status.SKIPPED,
                           reason="case initialize did not pass")]),
            stage("finalize", Status.PASSED, 6, host("srv1.lab.test", Status.PASSED, 6,
                  exit_code=0), host("cli1.lab.test", Status.PASSED, 6, exit_code=0)),
        ],
    )  # fmt: skip
    return RunResult(
        run_id=run_id,
        suite="lab",
        status=Status.FAILED,
        reason="1 case failed",
        cluster="lab",
        hosts=hosts,
        started_at=at(0),
        ended_at=at(9),
        stages=[
            stage("initialize", Status.PASSED, 0, host("srv1.lab.test", Status.PASSED, 0,
                  exit_code=0), host("cli1.lab.test", Status.PASSED, 0, exit_code=0)),
            stage("finalize", Status.PASSED, 8, host("srv1.lab.test", Status.PASSED, 8,
                  exit_code=0), host("cli1.lab.test", Status.PASSED, 8, exit_code=0)),
        ],
        cases=[greet, broken],
    )  # fmt: skip


async def create(store: Store, run_id: str, suite: str = "lab", **kw: object) -> None:
    await store.runs.create(
        run_id, suite, trigger="schedule", cluster="lab",
        hosts=["srv1.lab.test", "cli1.lab.test"], **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def record(
    run_id: str, stage_id: str, host_name: str, status: str = "passed", **kw: object
) -> HostStageRecord:
    case = kw.pop("case", "greet")
    stage = kw.pop("stage", "run")
    return HostStageRecord(
        run_id=run_id,
        stage_id=stage_id,
        case=case,  # type: ignore[arg-type]
        stage=stage,  # type: ignore[arg-type]
        result=HostResult(
            host=host_name,
            status=Status(status),
            started_at=at(2),
            ended_at=at(3),
            **kw,  # type: ignore[arg-type]
        ),
    )


async def load_run(store: Store, run_id: str) -> dict[str, Any] | None:
    """The run as the service's document reads it from the store
    (service/documents.py): its record as results.json has it, with its
    row's status, queued_at and trigger."""
    summary = await store.runs.get(run_id)
    result = await store.runs.load_result(run_id)
    if summary is None or result is None:
        return None
    return to_json(result) | {
        "status": summary.status,
        "queued_at": iso(summary.queued_at),
        "trigger": summary.trigger,
    }


async def loaded(store: Store, run_id: str) -> dict[str, Any]:
    document = await load_run(store, run_id)
    assert document is not None
    return document


async def host_rows(store: Store, run_id: str) -> int:
    async with store.db.session() as s:
        return int(
            await s.scalar(
                select(func.count())
                .select_from(HostResultRow)
                .where(HostResultRow.run_id == run_id)
            )
            or 0
        )


async def test_a_stage_result_applied_twice_is_one_row(store: Store) -> None:
    await create(store, "r1")
    first = record("r1", "r1:1:greet:run", "srv1.lab.test", exit_code=1, status="failed")
    assert await store.runs.record_stage_result(first) is True
    # The agent resends after a reconnect: the same key, written once more.
    again = record("r1", "r1:1:greet:run", "srv1.lab.test", exit_code=0, data={"n": 1})
    assert await store.runs.record_stage_result(again) is False
    assert await host_rows(store, "r1") == 1
    document = await loaded(store, "r1")
    (case,) = document["cases"]
    (stage,) = case["stages"]
    assert [(h["host"], h["status"], h["exit_code"], h["data"]) for h in stage["hosts"]] == [
        ("srv1.lab.test", "passed", 0, {"n": 1})
    ]
    # Another host, and the same host in another stage, are rows of their own.
    await store.runs.record_stage_result(record("r1", "r1:1:greet:run", "cli1.lab.test"))
    await store.runs.record_stage_result(
        record("r1", "r1:2:greet:finalize", "srv1.lab.test", stage="finalize")
    )
    assert await host_rows(store, "r1") == 3


async def test_a_batch_counts_only_new_results(store: Store) -> None:
    await create(store, "r1")
    batch = [record("r1", f"r1:{i}:greet:run", "srv1.lab.test") for i in range(50)]
    assert await store.runs.record_stage_results(batch) == 50
    assert await store.runs.record_stage_results(batch[:10]) == 0
    assert await host_rows(store, "r1") == 50


async def test_a_recorded_run_loads_as_its_results_json_plus_queued_at(
    store: Store, data_dir: Path
) -> None:
    result = a_result()
    queued = at(-30)
    await store.runs.create(
        result.run_id, "lab", trigger="api:alice", cluster="lab", hosts=result.hosts,
        definition={"name": "lab", "cases": ["greet", "broken"]},
        folder=data_dir / "runs" / result.run_id, queued_at=queued,
    )  # fmt: skip
    await store.runs.start(result.run_id, started_at=at(0))
    # Some results arrived during the run, under the engine's stage ids.
    live = HostStageRecord(
        run_id=result.run_id,
        stage_id=f"{result.run_id}:1:greet:run",
        case="greet",
        stage="run",
        result=result.cases[0].stages[1].hosts[0],
    )
    await store.runs.record_stage_result(live)
    await store.runs.record_run_result(result)
    expected = to_json(result) | {"queued_at": queued.isoformat(), "trigger": "api:alice"}
    assert await load_run(store, result.run_id) == expected
    # Recording the final result again changes nothing.
    await store.runs.record_run_result(result)
    assert await load_run(store, result.run_id) == expected
    assert await host_rows(store, result.run_id) == 16
    summary = await store.runs.get(result.run_id)
    assert (summary.status, summary.trigger, summary.folder) == (
        "failed", "api:alice", data_dir / "runs" / result.run_id,
    )  # fmt: skip
    assert await store.runs.definition(result.run_id) == {
        "name": "lab",
        "cases": ["greet", "broken"],
    }
    back = await store.runs.load_result(result.run_id)
    assert back is not None and to_json(back) == to_json(result)


async def test_a_run_in_progress_loads_from_the_results_that_arrived(store: Store) -> None:
    await create(store, "r2")
    await store.runs.start("r2", started_at=at(0))
    await store.runs.record_stage_result(
        record("r2", "r2:0:suite:initialize", "cli1.lab.test", case=None, stage="initialize")
    )
    await store.runs.record_stage_result(
        record("r2", "r2:0:suite:initialize", "srv1.lab.test", case=None, stage="initialize")
    )
    await store.runs.record_stage_result(
        record("r2", "r2:1:greet:initialize", "srv1.lab.test", "failed", stage="initialize")
    )
    document = await loaded(store, "r2")
    assert document["status"] == "running"
    # Hosts in the run's order, whatever order their results came in.
    assert [h["host"] for h in document["stages"][0]["hosts"]] == ["srv1.lab.test", "cli1.lab.test"]
    assert document["stages"][0]["status"] == "passed"
    (case,) = document["cases"]
    assert (case["name"], case["status"], case["stages"][0]["status"]) == (
        "greet", "failed", "failed",
    )  # fmt: skip


async def test_case_statuses_of_many_runs_are_what_loading_each_says(store: Store) -> None:
    recorded = a_result("r-recorded")
    await create(store, recorded.run_id)
    await store.runs.record_run_result(recorded)
    # One a killed service left: no case rows, its cases folded from hosts'.
    await create(store, "r-killed")
    await store.runs.start("r-killed", started_at=at(0))
    await store.runs.record_stage_result(
        record("r-killed", "r-killed:1:greet:initialize", "srv1.lab.test", "failed",
               stage="initialize")
    )  # fmt: skip
    await create(store, "r-queued")  # nothing ran
    ids = ["r-recorded", "r-killed", "r-queued", "r-none"]
    found = await store.runs.case_statuses(ids)
    for run_id in ids:
        loaded_ = await store.runs.load_result(run_id)
        expected = [(c.name, c.status) for c in loaded_.cases] if loaded_ is not None else []
        assert found[run_id] == expected, run_id
    assert found["r-recorded"] == [("greet", Status.PASSED), ("broken", Status.FAILED)]
    assert found["r-killed"] == [("greet", Status.FAILED)]


async def test_unknown_runs(store: Store) -> None:
    assert await load_run(store, "nope") is None
    assert await store.runs.get("nope") is None
    with pytest.raises(NotFound):
        await store.runs.start("nope")


async def test_runs_left_active_by_a_killed_coordinator_are_marked_interrupted(
    store: Store,
) -> None:
    await create(store, "queued")
    await create(store, "running")
    await store.runs.start("running")
    await store.runs.record_stage_result(record("running", "running:1:greet:run", "srv1.lab.test"))
    await create(store, "done")
    await store.runs.record_run_result(a_result("done"))
    assert sorted(await store.runs.mark_interrupted()) == ["queued", "running"]
    statuses = {r.id: (r.status, r.ended_at is not None) for r in await store.runs.recent()}
    assert statuses == {
        "queued": ("interrupted", True),
        "running": ("interrupted", True),
        "done": ("failed", True),
    }
    # What was acked before the kill is still there.
    document = await loaded(store, "running")
    assert document["status"] == "interrupted" and "coordinator" in document["reason"]
    assert document["cases"][0]["stages"][0]["hosts"][0]["host"] == "srv1.lab.test"
    assert await store.runs.mark_interrupted() == []


async def test_recent_runs_filter_by_suite_and_status_newest_first(store: Store) -> None:
    for i, suite in enumerate(["a", "b", "a"]):
        await create(store, f"r{i}", suite=suite, queued_at=at(i))
    await store.runs.end("r0", Status.CANCELLED, "cancelled in the queue")
    assert [r.id for r in await store.runs.recent()] == ["r2", "r1", "r0"]
    assert [r.id for r in await store.runs.recent(suite="a")] == ["r2", "r0"]
    assert [r.id for r in await store.runs.recent(status="cancelled")] == ["r0"]
    assert [r.id for r in await store.runs.recent(limit=1)] == ["r2"]


async def test_every_suites_newest_runs_in_one_query_are_what_each_suites_query_finds(
    store: Store,
) -> None:
    """The suites list's strips: the newest `limit` runs of each suite,
    newest first (ties by id), as `recent(suite=...)` finds them; a suite
    without runs has none."""
    for i in range(12):
        suite = ("a", "b", "c")[i % 3] if i < 9 else "a"
        # Two runs of "b" queued at the same moment: the id breaks the tie.
        await create(store, f"r{i:02}", suite=suite, queued_at=at(4 if i in (4, 7) else i))
    found = await store.runs.recent_by_suite(["a", "b", "c", "never"], 3)
    assert {name: [r.id for r in runs] for name, runs in found.items()} == {
        "a": ["r11", "r10", "r09"],
        "b": ["r07", "r04", "r01"],
        "c": ["r08", "r05", "r02"],
        "never": [],
    }
    for name in ("a", "b", "c"):
        assert found[name] == await store.runs.recent(suite=name, limit=3)
    assert await store.runs.recent_by_suite([], 3) == {}


async def test_prune_deletes_old_and_surplus_runs_with_their_folders(
    store: Store, data_dir: Path, tmp_path: Path
) -> None:
    now = at(100 * 86400)

    async def ended(run_id: str, suite: str, days_ago: float, folder: Path | None = None) -> Path:
        folder = folder or data_dir / "runs" / run_id
        (folder / "cases").mkdir(parents=True)
        (folder / "results.json").write_text("{}")
        moment = now - timedelta(days=days_ago)
        await create(store, run_id, suite=suite, folder=folder, queued_at=moment)
        await store.runs.record_stage_result(record(run_id, f"{run_id}:1:greet:run", "srv1"))
        await store.runs.end(run_id, Status.PASSED, ended_at=moment)
        return folder

    old = await ended("a-old", "a", 40)
    a_new = [await ended(f"a-{i}", "a", 5 - i) for i in range(4)]
    b_runs = [await ended(f"b-{i}", "b", 10 - i) for i in range(3)]
    outside = await ended("b-outside", "b", 50, folder=tmp_path / "elsewhere")
    await create(store, "a-queued", suite="a", queued_at=now - timedelta(days=60))

    gone = await store.runs.prune(30, 3, now=now)
    # "a": the 40-day-old one by age, the oldest of the four recent by count.
    assert sorted(gone) == ["a-0", "a-old", "b-outside"]
    assert not old.exists() and not a_new[0].exists()
    assert all(f.exists() for f in a_new[1:] + b_runs)
    # A folder outside the data folder is never removed; its run is.
    assert outside.exists()
    for run_id in gone:
        assert await load_run(store, run_id) is None
        assert await host_rows(store, run_id) == 0
    # A queued run is never pruned, however old.
    assert (await store.runs.get("a-queued")) is not None

    # Per-suite retention overrides the default.
    gone = await store.runs.prune(30, 3, suites={"b": Retention(keep_runs=1)}, now=now)
    assert sorted(gone) == ["b-0", "b-1"]
    assert not b_runs[0].exists() and b_runs[2].exists()
    assert await store.runs.prune(None, None, now=now) == []


async def test_suites_and_agents_are_remembered(store: Store) -> None:
    await store.suites.set("lab", repo="defs", definition_error=None)
    await store.suites.set("lab", repo="defs", definition_error="suite.yaml:3: tests: missing")
    await store.suites.set("other", repo="defs", definition_error=None)
    lab = await store.suites.get("lab")
    assert lab.definition_error == "suite.yaml:3: tests: missing"
    assert [s.name for s in await store.suites.all()] == ["lab", "other"]
    await store.suites.forget(["other"])
    assert [s.name for s in await store.suites.all()] == ["lab"]

    await store.agents.seen("srv1", labels=["x86"], version="0.1.0", at=at(0))
    await store.agents.seen("srv1", labels=["x86", "big"], version="0.2.0", at=at(5))
    (agent,) = await store.agents.all()
    assert (agent.name, agent.labels, agent.version, agent.last_seen) == (
        "srv1", ("x86", "big"), "0.2.0", at(5),
    )  # fmt: skip


async def test_a_result_is_committed_when_recording_returns(
    store: Store, database_url: str, data_dir: Path
) -> None:
    await create(store, "r1")
    assert await store.runs.record_stage_result(record("r1", "r1:1:greet:run", "srv1.lab.test"))
    # Another connection (a restarted coordinator) sees it at once.
    async with await Store.open(database_url, data_dir=data_dir) as other:
        assert await host_rows(other, "r1") == 1


async def test_results_arriving_together_share_commits_and_stay_exactly_once(
    store: Store,
) -> None:
    await create(store, "r1")
    records = [record("r1", f"r1:{i % 20}:greet:run", f"h{i // 20}") for i in range(400)]
    # Each result twice at once, as a resend racing its original would.
    answers = await asyncio.gather(
        *(store.runs.record_stage_result(r) for r in records for _ in (1, 2))
    )
    assert answers == [True, False] * 400
    assert await host_rows(store, "r1") == 400


async def test_one_bad_result_fails_alone(store: Store) -> None:
    await create(store, "r1")
    good = record("r1", "r1:1:greet:run", "srv1.lab.test")
    orphan = record("no-such-run", "x:1:greet:run", "srv1.lab.test")
    answers = await asyncio.gather(
        store.runs.record_stage_result(good),
        store.runs.record_stage_result(orphan),
        return_exceptions=True,
    )
    assert answers[0] is True and isinstance(answers[1], IntegrityError)
    assert await host_rows(store, "r1") == 1
