"""A run's document: what `GET /api/runs/{id}` answers, its event stream
sends, and the web's Run page shows.

It is results.json's shape, made by the one writer of that shape
(`report.json.to_json`) from the run's one record: while the run goes on,
the fold of its events (`LiveRun.board`); once it has ended, the record
the store keeps. The run folder adds what it adds to results.json (output
tails, VMs). The service adds only what it alone knows: when the run was
queued, who asked, and what it waits for.
"""

from __future__ import annotations

import asyncio
from typing import Any

from phalanx.codec import iso
from phalanx.events import RunRecord
from phalanx.model import CaseResult, RunResult
from phalanx.report.json import OUTPUT_TAIL, to_json
from phalanx.service.app import Service
from phalanx.service.live import LiveRun
from phalanx.store.runs import ACTIVE, RunSummary

# How often a stream looks again at a run no live state tells of: one a
# service before this one left queued or running (it reads `interrupted`).
STALE_POLL = 1.0
# A stream coalesces what happens within this time into one document: a
# stage printing thousands of lines a second is not re-sent per line.
COALESCE = 0.1


def live_run(service: Service, run_id: str) -> LiveRun | None:
    """The run's live state while the service has it queued or running."""
    active = service.queue.active.get(run_id)
    return active.live if active is not None else None


async def run_document(
    service: Service, run_id: str, tail: int = OUTPUT_TAIL
) -> tuple[RunSummary, dict[str, Any]] | None:
    """The run's summary row and its document; None: no such run."""
    live = live_run(service, run_id)
    # An ended run's summary and document never change: made once (no store
    # query after), copied per reader (who may add to it, as the API adds
    # its alerts); retention's removal forgets them (caches.py).
    if live is None and (kept := service.caches.documents.get((run_id, tail))) is not None:
        return kept[0], dict(kept[1])
    summary = await service.store.runs.get(run_id)
    if summary is None:
        return None
    ended = live is None and summary.status not in ACTIVE
    record: RunRecord | RunResult | None
    if live is not None and live.board.run_id:
        record = live.board.record()
    else:
        record = await service.store.runs.load_result(run_id)
        if record is None:
            return None
        if summary.status in ACTIVE and not record.cases:
            # Queued, or waiting for its agents: its cases, none begun.
            definition = await service.store.runs.definition(run_id) or {}
            names = definition.get("cases") or []
            record.cases = [CaseResult(name=str(name)) for name in names]
    document = await asyncio.to_thread(to_json, record, summary.folder, tail)
    # The store's: a run is over for its readers once its record and its
    # reports are kept (its events end a moment before).
    document["status"] = summary.status
    document["queued_at"] = iso(summary.queued_at)
    document["trigger"] = summary.trigger
    document["waiting"] = service.queue.waiting(run_id) or None
    if ended:
        service.caches.documents.put((run_id, tail), (summary, dict(document)))
    return summary, document


async def next_change(service: Service, run_id: str, seen: int) -> int:
    """Wait until the run may read differently than at version `seen` (of
    its live run; -1: before it started); the version to pass next."""
    live = live_run(service, run_id)
    if live is None:  # ended (the next document says so), or left by a service before
        await asyncio.sleep(STALE_POLL)
        return -1
    version = await live.changed(seen)
    await asyncio.sleep(COALESCE)
    return version
