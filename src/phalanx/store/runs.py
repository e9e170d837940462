"""Runs in the database: their life (queued, running, ended), every host's
result of every stage as it arrives, the final result, and retention.

A run's status is one of `model.Status`'s final values once it has ended,
and before that `queued` or `running`; a run a coordinator left behind when
it was killed is `interrupted` (see `mark_interrupted`).

`load_result` gives back the run's record: the final one once
`record_run_result` has written it, and before that (a running or
interrupted run) the one the host results that arrived so far make. The
service's documents are `report.json.to_json` of it (service/documents.py).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from phalanx.codec import columns, decode, encode, field_names
from phalanx.model import CaseHistory, CaseResult, HostResult, RunResult, StageResult, Status, worst
from phalanx.store.db import Database, rowcount
from phalanx.store.errors import NotFound
from phalanx.store.ingest import GroupCommit, write_host_results
from phalanx.store.tables import CaseRow, HostResultRow, RunRow, StageRow

log = logging.getLogger(__name__)

QUEUED = "queued"
RUNNING = "running"
INTERRUPTED = "interrupted"
ACTIVE = (QUEUED, RUNNING)
INTERRUPTED_REASON = "the coordinator stopped while the run was active"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class HostStageRecord:
    """One host's result of one stage (`HostResult`, the record the engine
    judged), and where it belongs: its run, the engine's stage id (opaque,
    unique in the run: with `host` the key that makes recording a result
    twice harmless), its case (None: the suite's own stages) and stage."""

    run_id: str
    stage_id: str
    case: str | None
    stage: str
    result: HostResult

    def row(self, position: int | None = None) -> dict[str, Any]:
        """The record as a stage_results row (column names): every field of
        the result (`codec.columns`) under its own name."""
        return {
            "run_id": self.run_id,
            "stage_id": self.stage_id,
            "case_name": self.case,
            "stage": self.stage,
            "position": position,
            **columns(self.result),
        }


# What a stored host result holds of the record: all of it, field by field
# as the record declares them (tests/store check a new field has a column).
HOST_FIELDS = field_names(HostResult)


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """A run's row: what lists of runs show."""

    id: str
    suite: str
    cluster: str | None
    status: str
    reason: str | None
    trigger: str
    queued_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    hosts: list[str]
    folder: Path | None

    @classmethod
    def of(cls, row: RunRow) -> RunSummary:
        return cls(
            id=row.id,
            suite=row.suite,
            cluster=row.cluster,
            status=row.status,
            reason=row.reason,
            trigger=row.trigger,
            queued_at=row.queued_at,
            started_at=row.started_at,
            ended_at=row.ended_at,
            hosts=list(row.hosts or []),
            folder=Path(row.folder) if row.folder else None,
        )


@dataclass(frozen=True)
class Retention:
    """How long a suite's ended runs are kept: runs older than `keep_days`
    go, and so do all but the newest `keep_runs`; None keeps on that count."""

    keep_days: float | None = None
    keep_runs: int | None = None


def _status(value: str) -> Status:
    try:
        return Status(value)
    except ValueError:
        return Status.PENDING


class Runs:
    """The runs of one database. Every method commits before it returns."""

    def __init__(self, db: Database, *, data_dir: Path | None = None) -> None:
        self.db = db
        # Retention deletes run folders only inside this folder: a path in
        # the database must never make it remove anything else.
        self.data_dir = data_dir.resolve() if data_dir is not None else None
        self._ingest: GroupCommit[HostStageRecord] = GroupCommit(
            lambda records: write_host_results(db, [r.row() for r in records])
        )

    # --- a run's life ---------------------------------------------------------------

    async def create(
        self,
        run_id: str,
        suite: str,
        *,
        trigger: str,
        cluster: str | None = None,
        hosts: Sequence[str] = (),
        definition: Any = None,
        folder: Path | None = None,
        queued_at: datetime | None = None,
    ) -> RunSummary:
        """A new run, `queued`. `trigger` says who asked (`schedule`,
        `api:alice`, `rerun:ID`…); `definition` is the JSON snapshot of the
        suite it runs, kept with it."""
        row = RunRow(
            id=run_id,
            suite=suite,
            cluster=cluster,
            status=QUEUED,
            reason=None,
            trigger=trigger,
            queued_at=queued_at or utcnow(),
            hosts=list(hosts),
            definition=definition,
            folder=str(folder) if folder is not None else None,
        )
        async with self.db.session() as s:
            s.add(row)
            await s.commit()
        return RunSummary.of(row)

    async def start(self, run_id: str, *, started_at: datetime | None = None) -> None:
        """The run left the queue and runs now."""
        await self._update(run_id, status=RUNNING, started_at=started_at or utcnow())

    async def end(
        self,
        run_id: str,
        status: Status | str,
        reason: str | None = None,
        *,
        ended_at: datetime | None = None,
    ) -> None:
        """The run ended without a result to record (e.g. cancelled in the
        queue); a run that has one ends by `record_run_result`."""
        await self._update(run_id, status=str(status), reason=reason, ended_at=ended_at or utcnow())

    async def _update(self, run_id: str, **values: Any) -> None:
        async with self.db.session() as s:
            done = await s.execute(update(RunRow).where(RunRow.id == run_id).values(**values))
            if rowcount(done) == 0:
                raise NotFound(f"no run {run_id!r}")
            await s.commit()

    # --- results --------------------------------------------------------------------

    async def record_stage_result(self, record: HostStageRecord) -> bool:
        """Write one host's stage result and commit, before the caller acks
        it. The same (run, stage_id, host) again updates the one row: True
        if this call created it, False if it was there already (a resend).
        Concurrent calls share a transaction (`store/ingest.py`)."""
        return await self._ingest.submit(record)

    async def flush(self) -> None:
        """Wait for results still being written (before closing the store)."""
        await self._ingest.flush()

    async def record_stage_results(self, records: Iterable[HostStageRecord]) -> int:
        """`record_stage_result` for many in one transaction (one commit);
        returns how many were new."""
        created = await write_host_results(self.db, [r.row() for r in records])
        return sum(created)

    async def record_run_result(
        self, result: RunResult, *, trigger: str = "", folder: Path | None = None
    ) -> None:
        """Write the run's final result: its status and times, its cases and
        stages, every host result (those already recorded are updated, and
        ones the result does not hold are dropped), in one transaction. A
        run not created before is created (`trigger`, `folder`)."""
        async with self.db.session() as s:
            row = await s.get(RunRow, result.run_id)
            if row is None:
                row = RunRow(
                    id=result.run_id,
                    suite=result.suite,
                    trigger=trigger,
                    queued_at=result.started_at or utcnow(),
                    folder=str(folder) if folder is not None else None,
                )
                s.add(row)
            row.suite = result.suite
            row.cluster = result.cluster
            row.status = result.status.value
            row.reason = result.reason
            row.hosts = list(result.hosts)
            row.started_at = result.started_at
            row.ended_at = result.ended_at
            if folder is not None:
                row.folder = str(folder)
            await s.flush()
            await s.execute(delete(CaseRow).where(CaseRow.run_id == result.run_id))
            await s.execute(delete(StageRow).where(StageRow.run_id == result.run_id))
            existing = {
                (h.case, h.stage, h.host): h
                for h in (
                    await s.scalars(
                        select(HostResultRow).where(HostResultRow.run_id == result.run_id)
                    )
                )
            }
            kept: set[int] = set()
            for position, case in enumerate(result.cases):
                s.add(
                    CaseRow(
                        run_id=result.run_id,
                        position=position,
                        name=case.name,
                        status=case.status.value,
                        reason=case.reason,
                        started_at=case.started_at,
                        ended_at=case.ended_at,
                        history=encode(case.history) if case.history is not None else None,
                    )
                )
            stages: list[tuple[str | None, StageResult]] = [(None, st) for st in result.stages]
            stages += [(c.name, st) for c in result.cases for st in c.stages]
            for position, (case_name, stage) in enumerate(stages):
                s.add(
                    StageRow(
                        run_id=result.run_id,
                        case=case_name,
                        position=position,
                        name=stage.name,
                        status=stage.status.value,
                        started_at=stage.started_at,
                        ended_at=stage.ended_at,
                    )
                )
                for host_position, host in enumerate(stage.hosts):
                    values = columns(host)
                    found = existing.get((case_name, stage.name, host.host))
                    if found is None:
                        # A host's part that never ran (a skipped stage) has
                        # no engine stage id: its key names case and stage.
                        key = f"{result.run_id}:result:{case_name or 'suite'}:{stage.name}"
                        s.add(
                            HostResultRow(
                                run_id=result.run_id,
                                stage_id=key,
                                case=case_name,
                                stage=stage.name,
                                position=host_position,
                                **values,
                            )
                        )
                        continue
                    kept.add(found.id)
                    found.position = host_position
                    for name, value in values.items():
                        setattr(found, name, value)
            stale = [h.id for h in existing.values() if h.id not in kept]
            if stale:
                await s.execute(delete(HostResultRow).where(HostResultRow.id.in_(stale)))
            await s.commit()

    # --- reading ----------------------------------------------------------------------

    async def get(self, run_id: str) -> RunSummary | None:
        async with self.db.session() as s:
            row = await s.get(RunRow, run_id)
            return RunSummary.of(row) if row is not None else None

    async def recent(
        self, *, suite: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[RunSummary]:
        """The newest runs first (by when they were queued)."""
        query = (
            select(RunRow)
            .options(defer(RunRow.definition))  # a summary has no use for it
            .order_by(RunRow.queued_at.desc(), RunRow.id.desc())
            .limit(limit)
        )
        if suite is not None:
            query = query.where(RunRow.suite == suite)
        if status is not None:
            query = query.where(RunRow.status == status)
        async with self.db.session() as s:
            return [RunSummary.of(row) for row in await s.scalars(query)]

    async def recent_by_suite(
        self, suites: Sequence[str], limit: int
    ) -> dict[str, list[RunSummary]]:
        """Each suite's newest `limit` runs, newest first (as `recent` reads
        them), in one query for all: a page of every suite's strip is one
        round trip to the store, not one a suite."""
        found: dict[str, list[RunSummary]] = {name: [] for name in suites}
        if not found:
            return found
        newest = (RunRow.queued_at.desc(), RunRow.id.desc())
        async with self.db.session() as s:
            # A few hundred suites a statement: SQLite's compound SELECT
            # takes 500 terms at most.
            for chunk in _chunks(list(found), 200):
                each = [
                    select(RunRow.id).where(RunRow.suite == name).order_by(*newest).limit(limit)
                    for name in chunk
                ]
                # Each limited SELECT in a subquery: SQLite allows no ORDER
                # BY or LIMIT on the terms of a UNION themselves.
                ids = union_all(*(select(term.subquery()) for term in each)).subquery()
                query = (
                    select(RunRow)
                    .options(defer(RunRow.definition))
                    .where(RunRow.id.in_(select(ids)))
                    .order_by(*newest)
                )
                for row in await s.scalars(query):
                    found[row.suite].append(RunSummary.of(row))
        return found

    async def definition(self, run_id: str) -> Any:
        """The definition snapshot the run was created with (None: none)."""
        async with self.db.session() as s:
            return await s.scalar(select(RunRow.definition).where(RunRow.id == run_id))

    async def load_result(self, run_id: str) -> RunResult | None:
        """The run as a `RunResult` (statuses that are not `model.Status`,
        such as `queued` or `interrupted`, read as pending)."""
        async with self.db.session() as s:
            row = await s.get(RunRow, run_id)
            if row is None:
                return None
            return await _build(s, row)

    async def case_statuses(self, run_ids: Sequence[str]) -> dict[str, list[tuple[str, Status]]]:
        """Each run's cases with their statuses, in order (as `load_result`
        reads them), from the cases' rows alone: what a history grid shows,
        in one query for many runs. A run without case rows (one a killed
        service left) is read whole, its cases folded from its hosts'."""
        found: dict[str, list[tuple[str, Status]]] = {run_id: [] for run_id in run_ids}
        async with self.db.session() as s:
            for chunk in _chunks(list(found), 500):
                rows = await s.execute(
                    select(CaseRow.run_id, CaseRow.name, CaseRow.status)
                    .where(CaseRow.run_id.in_(chunk))
                    .order_by(CaseRow.run_id, CaseRow.position)
                )
                for run_id, name, status in rows:
                    found[run_id].append((name, _status(status)))
        for run_id, cases in found.items():
            if not cases and (result := await self.load_result(run_id)) is not None:
                cases.extend((c.name, c.status) for c in result.cases)
        return found

    # --- after a crash, and retention ---------------------------------------------------

    async def mark_interrupted(
        self, reason: str = INTERRUPTED_REASON, *, at: datetime | None = None
    ) -> list[str]:
        """Runs left `queued` or `running` by a coordinator that stopped
        without ending them become `interrupted`; returns their ids. The
        service calls it at start, before it queues anything."""
        async with self.db.session() as s:
            ids = list(await s.scalars(select(RunRow.id).where(RunRow.status.in_(ACTIVE))))
            if ids:
                await s.execute(
                    update(RunRow)
                    .where(RunRow.id.in_(ids))
                    .values(status=INTERRUPTED, reason=reason, ended_at=at or utcnow())
                )
            await s.commit()
        return ids

    async def prune(
        self,
        keep_days: float | None,
        keep_runs: int | None,
        *,
        suites: Mapping[str, Retention] | None = None,
        now: datetime | None = None,
    ) -> list[str]:
        """Delete ended runs past retention, with their rows and folders:
        older than `keep_days` (by when they ended), or beyond the newest
        `keep_runs` of their suite. `suites` overrides both per suite.
        Queued and running runs are never touched. Returns the deleted ids."""
        now = now or utcnow()
        default = Retention(keep_days, keep_runs)
        query = (
            select(RunRow.id, RunRow.suite, RunRow.queued_at, RunRow.ended_at, RunRow.folder)
            .where(RunRow.status.not_in(ACTIVE))
            .order_by(RunRow.suite, RunRow.queued_at.desc(), RunRow.id.desc())
        )
        doomed: list[str] = []
        folders: list[Path] = []
        async with self.db.session() as s:
            seen: dict[str, int] = {}
            for run_id, suite, queued_at, ended_at, folder in (await s.execute(query)).all():
                rule = (suites or {}).get(suite, default)
                index = seen[suite] = seen.get(suite, -1) + 1
                moment = ended_at or queued_at
                old = rule.keep_days is not None and moment < now - timedelta(days=rule.keep_days)
                extra = rule.keep_runs is not None and index >= rule.keep_runs
                if old or extra:
                    doomed.append(run_id)
                    if folder:
                        folders.append(Path(folder))
            for chunk in _chunks(doomed, 500):
                for table in (HostResultRow, StageRow, CaseRow):
                    await s.execute(delete(table).where(table.run_id.in_(chunk)))
                await s.execute(delete(RunRow).where(RunRow.id.in_(chunk)))
            await s.commit()
        # After the commit: a crash in between leaves a folder without a
        # run (harmless), never a run whose files are gone.
        await asyncio.to_thread(self._remove_folders, folders)
        return doomed

    def _remove_folders(self, folders: list[Path]) -> None:
        for folder in folders:
            resolved = folder.resolve()
            if self.data_dir is not None and not resolved.is_relative_to(self.data_dir):
                log.warning("not removing %s: it is outside the data folder", folder)
                continue
            shutil.rmtree(resolved, ignore_errors=True)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class _Builder:
    """A RunResult put together from rows; stages and cases the rows name
    without their own row (a run still going, or interrupted) are derived
    from their hosts' results."""

    result: RunResult
    host_order: dict[str, int]
    stages: dict[tuple[str | None, str], StageResult] = field(default_factory=dict)
    derived_stages: list[StageResult] = field(default_factory=list)
    derived_cases: list[CaseResult] = field(default_factory=list)

    def case(self, name: str) -> CaseResult:
        found = self.result.case(name)
        if found is None:
            found = CaseResult(name=name)
            self.result.cases.append(found)
            self.derived_cases.append(found)
        return found

    def add_stage(self, case: str | None, stage: StageResult) -> None:
        self.stages[(case, stage.name)] = stage
        (self.result.stages if case is None else self.case(case).stages).append(stage)

    def stage(self, case: str | None, name: str) -> StageResult:
        found = self.stages.get((case, name))
        if found is None:
            found = StageResult(name=name)
            self.add_stage(case, found)
            self.derived_stages.append(found)
        return found

    def finish(self) -> RunResult:
        for stage in self.derived_stages:
            _fold(stage, [h.status for h in stage.hosts], stage.hosts)
        for case in self.derived_cases:
            _fold(case, [st.status for st in case.stages], case.stages)
        return self.result


def _fold(into: StageResult | CaseResult, statuses: list[Status], parts: Sequence[Any]) -> None:
    into.status = worst(statuses, empty=Status.PENDING)
    starts = [p.started_at for p in parts if p.started_at is not None]
    ends = [p.ended_at for p in parts if p.ended_at is not None]
    into.started_at = min(starts, default=None)
    into.ended_at = max(ends, default=None) if len(ends) == len(parts) else None


async def _build(s: AsyncSession, row: RunRow) -> RunResult:
    result = RunResult(
        run_id=row.id,
        suite=row.suite,
        status=_status(row.status),
        reason=row.reason,
        cluster=row.cluster,
        hosts=list(row.hosts or []),
        started_at=row.started_at,
        ended_at=row.ended_at,
    )
    build = _Builder(result, {h: i for i, h in enumerate(result.hosts)})
    for c in await s.scalars(
        select(CaseRow).where(CaseRow.run_id == row.id).order_by(CaseRow.position)
    ):
        result.cases.append(
            CaseResult(
                name=c.name,
                status=_status(c.status),
                reason=c.reason,
                started_at=c.started_at,
                ended_at=c.ended_at,
                history=decode(CaseHistory, c.history) if c.history is not None else None,
            )
        )
    for st in await s.scalars(
        select(StageRow).where(StageRow.run_id == row.id).order_by(StageRow.position)
    ):
        build.add_stage(
            st.case,
            StageResult(
                name=st.name,
                status=_status(st.status),
                started_at=st.started_at,
                ended_at=st.ended_at,
            ),
        )
    hosts = list(
        await s.scalars(
            select(HostResultRow).where(HostResultRow.run_id == row.id).order_by(HostResultRow.id)
        )
    )
    # Stages in the order their first result came; hosts in the order the
    # final result listed them, else the run's host order.
    for h in hosts:
        build.stage(h.case, h.stage)
    unknown = len(build.host_order)
    hosts.sort(
        key=lambda h: (
            h.position if h.position is not None else unknown,
            build.host_order.get(h.host, unknown),
            h.id,
        )
    )
    for h in hosts:
        build.stage(h.case, h.stage).hosts.append(
            decode(HostResult, {name: getattr(h, name) for name in HOST_FIELDS})
        )
    return build.finish()
