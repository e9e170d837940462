"""A run's pages (the run, its files, a stage's output) and the forms
that start, cancel and rerun runs."""

from __future__ import annotations

import asyncio
import functools
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from phalanx.service.app import UnknownSuite, Unrunnable
from phalanx.service.auth import Principal
from phalanx.service.queue import NotActive
from phalanx.service.web import output, views
from phalanx.service.web.access import Refused, Web, action, address, int_or, local, page
from phalanx.service.web.render import SECURITY_HEADERS
from phalanx.store.errors import NotFound

router = APIRouter()


@page(router, "/runs/{run_id}")
async def run(web: Web, request: Request, who: Principal | None) -> Response:
    run_id = request.path_params["run_id"]
    key = (run_id, who)
    if (kept := web.ended_runs.get(key)) is not None and views.ended_kept(web.service, run_id):
        return HTMLResponse(kept, headers=SECURITY_HEADERS)
    view = await views.run(web.service, run_id)
    if view is None:
        raise Refused(404, f"no run {run_id!r}")
    response = web.pages.render(
        request, "run.html", who, run=view, parts=web.pages.report_parts(view)
    )
    if not view.active and views.ended_kept(web.service, run_id):
        # Rendered from its ended document (not a live board's last look)
        web.ended_runs.put(key, bytes(response.body))
    return response


@page(router, "/runs/{run_id}/files/{path:path}")
async def run_file(web: Web, request: Request, who: Principal | None) -> Response:
    """A file of the run's folder: its report files as they are, any
    other (stage output, collected logs) in the viewer, or as it is
    with `raw=1`."""
    run_id, relative = request.path_params["run_id"], request.path_params["path"]
    summary = await web.service.store.runs.get(run_id)
    if summary is None or summary.folder is None:
        raise Refused(404, f"run {run_id!r} has no files")
    folder = summary.folder.resolve()
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        raise Refused(404, f"run {run_id!r} has no file {relative!r}")
    q = request.query_params
    if relative in views.REPORT_FILES:  # written by phalanx itself
        kinds = {".json": "application/json", ".xml": "application/xml", ".html": "text/html"}
        # report.html is a page of this site: the pages' CSP goes with it.
        return FileResponse(
            path, media_type=kinds.get(path.suffix, "text/plain"), headers=SECURITY_HEADERS
        )
    if q.get("raw") == "1":
        # What a host wrote is never a page of this site, whatever its name.
        return FileResponse(
            path,
            media_type="text/plain; charset=utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )
    query = q.get("q", "")[: output.MAX_QUERY]
    offset = int_or(q.get("offset"), 0)
    note = ""
    wrapped = False
    if q.get("at") == "end":
        offset = await asyncio.to_thread(lambda: max(0, path.stat().st_size - output.PAGE))
    elif query and q.get("find"):
        found = await asyncio.to_thread(output.find, path, query, offset)
        if found is None and offset > 0:  # go on from the start, as editors do
            found = await asyncio.to_thread(output.find, path, query, 0)
            wrapped = found is not None
        if found is None:
            note = f"“{query}” is not in this output"
        else:
            offset = found
    exact = q.get("exact") == "1" and not note and q.get("at") != "end"
    shown = await asyncio.to_thread(
        functools.partial(output.read_page, path, offset, query=query, exact=exact)
    )
    return web.pages.render(
        request,
        "output.html",
        who,
        summary=summary,
        page=shown,
        link=views.files_link(run_id, relative),
        relative=relative,
        query=query,
        note=note,
        wrapped=wrapped,
    )


@page(router, "/runs/{run_id}/output")
async def output_page(web: Web, request: Request, who: Principal | None) -> Response:
    """A stage's output by case, stage and host (as the API names it)."""
    q = request.query_params
    stage, host = q.get("stage", ""), q.get("host", "")
    if not stage or not host:
        raise Refused(404, "say which stage and host")
    link = views.output_link(request.path_params["run_id"], q.get("case") or None, stage, host)
    return RedirectResponse(link, status_code=303)


@action(router, "/suites/{name}/run")
async def start(web: Web, request: Request, who: Principal, form: dict[str, str]) -> Response:
    try:
        summary = await web.service.submit(request.path_params["name"], f"web:{who.name}")
    except UnknownSuite as exc:
        raise Refused(404, str(exc)) from None
    except Unrunnable as exc:
        raise Refused(409, str(exc)) from None
    await web.service.store.audit.record(
        who.name,
        "run.start",
        summary.id,
        address=address(request),
        detail=request.path_params["name"],
    )
    return RedirectResponse(f"/runs/{quote(summary.id, safe='')}", status_code=303)


@action(router, "/runs/{run_id}/cancel")
async def cancel(web: Web, request: Request, who: Principal, form: dict[str, str]) -> Response:
    run_id = request.path_params["run_id"]
    try:
        await web.service.queue.cancel(run_id, who.name)
    except NotFound as exc:
        raise Refused(404, str(exc)) from None
    except NotActive:
        pass  # it has ended meanwhile: the page says so
    else:
        await web.service.store.audit.record(
            who.name, "run.cancel", run_id, address=address(request)
        )
    return RedirectResponse(
        local(form.get("back", f"/runs/{quote(run_id, safe='')}")), status_code=303
    )


@action(router, "/runs/{run_id}/rerun")
async def rerun(web: Web, request: Request, who: Principal, form: dict[str, str]) -> Response:
    try:
        summary = await web.service.rerun(
            request.path_params["run_id"], failed_only=form.get("failed_only") == "1"
        )
    except (NotFound, UnknownSuite) as exc:
        raise Refused(404, str(exc)) from None
    except Unrunnable as exc:
        raise Refused(409, str(exc)) from None
    await web.service.store.audit.record(
        who.name,
        "run.start",
        summary.id,
        address=address(request),
        detail=f"rerun of {request.path_params['run_id']}",
    )
    return RedirectResponse(f"/runs/{quote(summary.id, safe='')}", status_code=303)
