"""The pages' live fragments: server-sent events that htmx swaps in."""

from __future__ import annotations

import asyncio
import hashlib
import html as markup
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.responses import StreamingResponse as Streaming

from phalanx.service.auth import Principal
from phalanx.service.documents import next_change
from phalanx.service.web import views
from phalanx.service.web.access import Refused, Web, page, principal
from phalanx.service.web.lists import agents_data, clusters_data

DISCONNECT_CHECK = 5.0  # at most this long between two looks at whether a page is still open
PAGE_POLL = 2.0  # the same for the dashboard and the lists
RECHECK_EVERY = 0.5  # how often a live stream checks that its reader may still read
LIVE_FOR = 600.0  # a page's stream ends after this; the browser reconnects

router = APIRouter()


def live_pages(web: Web) -> dict[str, tuple[Callable[[], Awaitable[dict[str, Any]]], str]]:
    return {
        "dashboard": (web.dashboard.get, "dashboard_body.html"),
        "suites": (web.suites.get, "suites_body.html"),
        "agents": (lambda: agents_data(web.service), "agents_body.html"),
        "clusters": (lambda: clusters_data(web.service), "clusters_body.html"),
    }


def live_stream(
    web: Web,
    request: Request,
    render: Callable[[], Awaitable[tuple[str, bool]]],
    event: str,
    wait: Callable[[], Awaitable[None]],
) -> Streaming:
    """`stream`'s events; if the database cannot be read, an
    `unavailable` event (swapped in where the page's content was: the
    content is stale by then) ends it, and the browser comes back later."""

    def unavailable(why: str) -> str:
        said = f"The service cannot read its database: {why}. This page updates again when it can."
        return sse("unavailable", f'<p class="problem" role="status">{markup.escape(said)}</p>')

    return Streaming(
        web.failures.guard(stream(web, request, render, event, wait), unavailable),
        media_type="text/event-stream",
    )


async def stream(
    web: Web,
    request: Request,
    render: Callable[[], Awaitable[tuple[str, bool]]],
    event: str,
    wait: Callable[[], Awaitable[None]],
) -> AsyncGenerator[str, None]:
    """`event` with the fragment each time it changes (`wait` returns
    when it may have); `end` once it is final. It ends as soon as its
    reader may no longer read (signed out, removed, token revoked):
    checked every RECHECK_EVERY seconds."""
    last = ""
    deadline = time.monotonic() + LIVE_FOR
    while time.monotonic() < deadline and not await request.is_disconnected():
        html, final = await render()
        digest = hashlib.sha256(html.encode()).hexdigest()
        if digest != last:
            last = digest
            yield sse(event, html)
        if final:
            yield sse("end", "")
            return
        # A page no longer shown must not hold its stream open for long,
        # nor one its reader may no longer read.
        waiting = asyncio.ensure_future(wait())
        try:
            resume = time.monotonic() + DISCONNECT_CHECK
            while not waiting.done() and (left := resume - time.monotonic()) > 0:
                await asyncio.wait({waiting}, timeout=min(left, RECHECK_EVERY))
                if await principal(web, request) is None and not web.service.config.anonymous_read:
                    return
        finally:
            waiting.cancel()


@page(router, "/live/{name}", live=True)
async def live(web: Web, request: Request, who: Principal | None) -> Response:
    name = request.path_params["name"]
    known = live_pages(web)
    if name not in known:
        raise Refused(404, f"no live page {name!r}")
    gather, template = known[name]

    async def render() -> tuple[str, bool]:
        return web.pages.fragment(template, who, **await gather()), False

    async def wait() -> None:
        await asyncio.sleep(PAGE_POLL)

    return live_stream(web, request, render, "page", wait)


@page(router, "/runs/{run_id}/live", live=True)
async def run_live(web: Web, request: Request, who: Principal | None) -> Response:
    run_id = request.path_params["run_id"]
    if await web.service.store.runs.get(run_id) is None:
        raise Refused(404, f"no run {run_id!r}")

    async def render() -> tuple[str, bool]:
        view = await views.run(web.service, run_id)
        if view is None:
            return "", True
        html = web.pages.fragment(
            "run_live.html", who, run=view, parts=web.pages.report_parts(view)
        )
        return html, not view.active

    seen = -1

    async def changed() -> None:
        nonlocal seen
        seen = await next_change(web.service, run_id, seen)

    return live_stream(web, request, render, "live", changed)


def sse(event: str, html: str) -> str:
    data = "\n".join(f"data: {line}" for line in html.splitlines()) or "data: "
    return f"event: {event}\n{data}\n\n"
