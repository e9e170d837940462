"""Runs: start one, list them, read one's document, cancel, run again."""

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from phalanx.service.app import UnknownSuite, Unrunnable
from phalanx.service.documents import run_document
from phalanx.service.queue import ALERTS_FILE, NotActive
from phalanx.service.routes.deps import (
    ApiError,
    ListingsDep,
    Operator,
    Reader,
    RunId,
    ServiceDep,
    client_address,
)
from phalanx.store.errors import NotFound
from phalanx.store.runs import RunSummary

router = APIRouter(tags=["runs"])


class RerunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failed_only: bool = False  # only the cases that did not pass (or skip)


@router.post("/api/suites/{name}/runs", status_code=201)
async def submit(name: str, who: Operator, request: Request, service: ServiceDep) -> dict[str, Any]:
    try:
        summary = await service.submit(name, f"api:{who.name}")
    except UnknownSuite as exc:
        raise ApiError(404, str(exc)) from None
    except Unrunnable as exc:
        raise ApiError(409, str(exc)) from None
    await service.store.audit.record(
        who.name, "run.start", summary.id, address=client_address(request), detail=name
    )
    return _summary(summary)


@router.get("/api/runs", response_model=list[dict[str, Any]])
async def runs(
    who: Reader,
    service: ServiceDep,
    listings: ListingsDep,
    suite: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Response:
    async def gather() -> list[dict[str, Any]]:
        found = await service.store.runs.recent(suite=suite, status=status, limit=limit)
        return [_summary(s, service.queue.waiting(s.id)) for s in found]

    key = (suite, status, limit)
    found = await listings.runs(key, gather)
    # JSON types already: encoded once per gathering, not walked by FastAPI's
    # encoder for every reader.
    return Response(listings.encoded(("runs", key), found), media_type="application/json")


@router.get("/api/runs/{run_id}", response_model=dict[str, Any])
async def run(run_id: RunId, who: Reader, service: ServiceDep) -> Response:
    """The run's results.json document (while it runs: as far as it has
    come), with `queued_at`, `trigger`, `waiting` and `alerts`."""
    found = await run_document(service, run_id)
    if found is None:
        raise ApiError(404, f"no run {run_id!r}")
    summary, document = found
    document["alerts"] = await _alerts(summary.folder)
    # JSON types already (report/json.py): encoded as they are, not walked
    # again by FastAPI's encoder (most of this route's CPU).
    return Response(orjson.dumps(document), media_type="application/json")


@router.post("/api/runs/{run_id}/cancel", status_code=202)
async def cancel(
    run_id: RunId, who: Operator, request: Request, service: ServiceDep
) -> dict[str, Any]:
    try:
        status = await service.queue.cancel(run_id, who.name)
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None
    except NotActive as exc:
        raise ApiError(409, str(exc)) from None
    await service.store.audit.record(
        who.name, "run.cancel", run_id, address=client_address(request)
    )
    return {"id": run_id, "status": status}


@router.post("/api/runs/{run_id}/rerun", status_code=201)
async def rerun(
    run_id: RunId,
    who: Operator,
    http: Request,
    service: ServiceDep,
    request: RerunRequest | None = None,
) -> dict[str, Any]:
    failed_only = request.failed_only if request is not None else False
    try:
        summary = await service.rerun(run_id, failed_only=failed_only)
    except (NotFound, UnknownSuite) as exc:
        raise ApiError(404, str(exc)) from None
    except Unrunnable as exc:
        raise ApiError(409, str(exc)) from None
    await service.store.audit.record(
        who.name,
        "run.start",
        summary.id,
        address=client_address(http),
        detail=f"rerun of {run_id}",
    )
    return _summary(summary)


def _summary(summary: RunSummary, waiting: str = "") -> dict[str, Any]:
    def iso(moment: Any) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {
        "id": summary.id,
        "suite": summary.suite,
        "cluster": summary.cluster,
        "status": summary.status,
        "reason": summary.reason,
        "trigger": summary.trigger,
        "queued_at": iso(summary.queued_at),
        "started_at": iso(summary.started_at),
        "ended_at": iso(summary.ended_at),
        "hosts": summary.hosts,
        "waiting": waiting or None,
    }


async def _alerts(folder: Path | None) -> Any:
    if folder is None:
        return None
    try:
        text = await asyncio.to_thread((folder / ALERTS_FILE).read_text, "utf-8")
        return json.loads(text)
    except (OSError, ValueError):
        return None
