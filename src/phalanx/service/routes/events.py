"""A run's live document as server-sent events."""

import asyncio
import json
import time
from collections.abc import AsyncGenerator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from phalanx.service.documents import next_change, run_document
from phalanx.service.routes.deps import (
    ApiError,
    Reader,
    RunId,
    ServiceDep,
    principal,
    reader,
    store_failures,
)
from phalanx.service.unavailable import message

KEEPALIVE = 15.0  # seconds between an event stream's signs of life when nothing changes
# How often a long-lived stream checks that its reader may still read: a
# removed user's or revoked token's streams end within this.
RECHECK_EVERY = 0.5

router = APIRouter(tags=["runs"])


@router.get(
    "/api/runs/{run_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(
    run_id: RunId, who: Reader, request: Request, service: ServiceDep
) -> StreamingResponse:
    """Server-sent events: the run's document (as `GET /api/runs/{id}`)
    each time it changes, until the run has ended, or until the reader
    may no longer read (signed out, removed, token revoked). If the
    database cannot be read, an `unavailable` event (its `message`
    says why) ends it."""
    if await service.store.runs.get(run_id) is None:
        raise ApiError(404, f"no run {run_id!r}")

    async def may_read() -> bool:
        try:
            return (
                await reader(await principal(request, service), service) is not None or who is None
            )
        except ApiError:
            return False

    async def stream() -> AsyncGenerator[str, None]:
        last, seen = None, -1
        checked = quiet = time.monotonic()
        changed = True
        while True:
            if time.monotonic() - checked >= RECHECK_EVERY:
                checked = time.monotonic()
                if not await may_read():
                    return
            if changed:
                found = await run_document(service, run_id)
                if found is None:
                    return
                _, document = found
                text = json.dumps(document)
                if text != last:
                    last, quiet = text, time.monotonic()
                    yield f"event: run\ndata: {text}\n\n"
                if document["status"] not in ("queued", "running"):
                    return
            try:
                seen = await asyncio.wait_for(next_change(service, run_id, seen), RECHECK_EVERY)
                changed = True
            except TimeoutError:
                changed = False
                if time.monotonic() - quiet >= KEEPALIVE:
                    # Nothing changed for a while: a comment line, so that
                    # the client can tell a quiet run from a dead connection.
                    quiet = time.monotonic()
                    yield ": keepalive\n\n"

    def unavailable(why: str) -> str:
        return f"event: unavailable\ndata: {json.dumps({'message': message(why)})}\n\n"

    return StreamingResponse(
        store_failures(request).guard(stream(), unavailable), media_type="text/event-stream"
    )
