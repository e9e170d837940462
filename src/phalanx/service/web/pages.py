"""The web UI's routes: pages (GET), their live fragments (server-sent
events that htmx swaps in), and the forms' actions (POST only; each answers
with a redirect, so the pages work without JavaScript).

Who: the login session cookie (or a user API token, as the API takes). A
state-changing request needs the role for it (403 otherwise), comes as a
POST, and is refused when its `Origin` names another site: with the
cookie's SameSite=Lax that keeps other sites from acting for a user.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import html as markup
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.responses import StreamingResponse as Streaming
from starlette.staticfiles import StaticFiles

from phalanx.coordinator.auth import bearer
from phalanx.service.app import Service, UnknownSuite, Unrunnable
from phalanx.service.auth import AuthError, Principal, Role
from phalanx.service.caches import Lru
from phalanx.service.documents import next_change
from phalanx.service.origin import from_this_site
from phalanx.service.queue import NotActive
from phalanx.service.unavailable import StoreFailures
from phalanx.service.web import charts, output, views
from phalanx.service.web.render import SECURITY_HEADERS, Pages
from phalanx.service.web.shared import Shared
from phalanx.store.errors import Conflict, NotFound

STATIC = Path(__file__).parent / "static"
DISCONNECT_CHECK = 5.0  # at most this long between two looks at whether a page is still open
PAGE_POLL = 2.0  # the same for the dashboard and the lists
RECHECK_EVERY = 0.5  # how often a live stream checks that its reader may still read
LIVE_FOR = 600.0  # a page's stream ends after this; the browser reconnects
AUDIT_SHOWN = 100  # the admin page's latest audit entries (the API reads further back)

Handler = Callable[..., Awaitable[Response]]


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def mount(app: FastAPI, service: Service, *, session_cookie: str) -> None:
    """Add the web UI's routes and static files to the service's app."""
    from phalanx.service.api import open_session  # the API's login, shared

    pages = Pages()
    failures: StoreFailures = app.state.store_failures
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    async def report_css(request: Request) -> Response:
        from phalanx.report.html import stylesheet

        return Response(stylesheet(), media_type="text/css")

    app.add_api_route("/report.css", report_css, methods=["GET"], include_in_schema=False)

    async def favicon(request: Request) -> Response:
        # Browsers ask for /favicon.ico whatever the page's <link rel="icon"> says.
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.add_api_route("/favicon.ico", favicon, methods=["GET"], include_in_schema=False)

    # --- who asks -------------------------------------------------------------------

    async def principal(request: Request) -> Principal | None:
        header = request.headers.get("authorization")
        if header is not None:
            token = bearer(header)
            return await service.auth.verify_user_token(token) if token else None
        cookie = request.cookies.get(session_cookie)
        return await service.auth.session_user(cookie) if cookie else None

    def page(path: str, *, live: bool = False) -> Callable[[Handler], Handler]:
        """A GET page for readers: a visitor who must sign in is sent to the login."""

        def wrap(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                who = await principal(request)
                if who is None and not service.config.anonymous_read:
                    if live:
                        return Response(status_code=401)
                    target = request.url.path + (
                        f"?{request.url.query}" if request.url.query else ""
                    )
                    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
                try:
                    return await handler(request, who)
                except Refused as exc:
                    return pages.error(request, who, exc.status, exc.message)

            app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)
            return handler

        return wrap

    def action(path: str, role: Role = Role.OPERATOR) -> Callable[[Handler], Handler]:
        """A POST form action that needs `role`."""

        def wrap(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                who = await principal(request)
                try:
                    if not _same_origin(request):
                        raise Refused(403, "this form was sent from another site")
                    if who is None:
                        raise Refused(401, "sign in first")
                    if not who.role.allows(role):
                        raise Refused(
                            403, f"{who.name} is a {who.role.value}: this needs an {role.value}"
                        )
                    form = await _form(request)
                    return await handler(request, who, form)
                except Refused as exc:
                    return pages.error(request, who, exc.status, exc.message)

            app.add_api_route(path, endpoint, methods=["POST"], include_in_schema=False)
            return handler

        return wrap

    # --- login ------------------------------------------------------------------------

    async def login_page(request: Request) -> Response:
        who = await principal(request)
        nxt = _local(request.query_params.get("next", "/"))
        return pages.render(request, "login.html", who, next=nxt, failed=False, name="")

    async def login(request: Request) -> Response:
        if not _same_origin(request):
            return pages.error(request, None, 403, "this form was sent from another site")
        form = await _form(request)
        nxt = _local(form.get("next", "/"))
        name = form.get("name", "")
        who = await service.auth.login(name, form.get("password", ""), _address(request))
        if isinstance(who, float):
            if who > 0:
                return pages.error(
                    request, None, 429, f"too many failed sign-ins: try again in {who:.0f} s"
                )
            # The name stays: a mistyped password is retyped, not both.
            return pages.render(
                request, "login.html", None, next=nxt, failed=True, name=name, status=401
            )
        response = RedirectResponse(nxt, status_code=303)
        await open_session(service, response, who)
        return response

    async def logout(request: Request) -> Response:
        if not _same_origin(request):
            return pages.error(request, None, 403, "this form was sent from another site")
        if cookie := request.cookies.get(session_cookie):
            who = await service.auth.session_user(cookie)
            await service.auth.end_session(cookie)
            if who is not None:
                await service.store.audit.record(
                    who.name, "logout", who.name, address=_address(request)
                )
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(session_cookie)
        return response

    app.add_api_route("/login", login_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/login", login, methods=["POST"], include_in_schema=False)
    app.add_api_route("/logout", logout, methods=["POST"], include_in_schema=False)

    # --- live fragments ---------------------------------------------------------------

    # Many readers at once share one gathering of the dashboard and of the
    # suites list (web/shared.py); both show what the dashboard's key holds.
    the_dashboard = Shared(lambda: views.dashboard(service), lambda: views.dashboard_key(service))
    the_suites = Shared(lambda: _suites(service), lambda: views.dashboard_key(service))

    def dashboard_key() -> Hashable:
        return views.dashboard_key(service)

    def _suite_page(
        name: str,
    ) -> Callable[[], Awaitable[tuple[views.SuiteView, views.HistoryView]]]:
        async def gather() -> tuple[views.SuiteView, views.HistoryView]:
            return await views.suite(service, name), await views.history(service, name)

        return gather

    suite_pages: Lru[str, Shared[tuple[views.SuiteView, views.HistoryView]]] = Lru(256)
    live_pages: dict[str, tuple[Callable[[], Awaitable[dict[str, Any]]], str]] = {
        "dashboard": (the_dashboard.get, "dashboard_body.html"),
        "suites": (the_suites.get, "suites_body.html"),
        "agents": (lambda: _agents(service), "agents_body.html"),
        "clusters": (lambda: _clusters(service), "clusters_body.html"),
    }

    def live_stream(
        request: Request,
        render: Callable[[], Awaitable[tuple[str, bool]]],
        event: str,
        wait: Callable[[], Awaitable[None]],
    ) -> Streaming:
        """`stream`'s events; if the database cannot be read, an
        `unavailable` event (swapped in where the page's content was: the
        content is stale by then) ends it, and the browser comes back later."""

        def unavailable(why: str) -> str:
            said = (
                f"The service cannot read its database: {why}. This page updates again when it can."
            )
            return _sse(
                "unavailable", f'<p class="problem" role="status">{markup.escape(said)}</p>'
            )

        return Streaming(
            failures.guard(stream(request, render, event, wait), unavailable),
            media_type="text/event-stream",
        )

    async def stream(
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
                yield _sse(event, html)
            if final:
                yield _sse("end", "")
                return
            # A page no longer shown must not hold its stream open for long,
            # nor one its reader may no longer read.
            waiting = asyncio.ensure_future(wait())
            try:
                resume = time.monotonic() + DISCONNECT_CHECK
                while not waiting.done() and (left := resume - time.monotonic()) > 0:
                    await asyncio.wait({waiting}, timeout=min(left, RECHECK_EVERY))
                    if await principal(request) is None and not service.config.anonymous_read:
                        return
            finally:
                waiting.cancel()

    @page("/live/{name}", live=True)
    async def live(request: Request, who: Principal | None) -> Response:
        name = request.path_params["name"]
        if name not in live_pages:
            raise Refused(404, f"no live page {name!r}")
        gather, template = live_pages[name]

        async def render() -> tuple[str, bool]:
            return pages.fragment(template, who, **await gather()), False

        async def wait() -> None:
            await asyncio.sleep(PAGE_POLL)

        return live_stream(request, render, "page", wait)

    # --- pages ------------------------------------------------------------------------

    # (page, reader) -> the gathering it was last rendered from, and the page
    rendered: Lru[tuple[str, Principal | None], tuple[object, bytes]] = Lru(256)

    def render_once(
        request: Request, template: str, who: Principal | None, gathered: dict[str, Any]
    ) -> Response:
        """A page of a shared gathering, rendered once per reader for it."""
        key = (template, who)
        if (last := rendered.get(key)) is not None and last[0] is gathered:
            html = last[1]
        else:
            html = bytes(pages.render(request, template, who, **gathered).body)
            rendered.put(key, (gathered, html))
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    @page("/")
    async def dashboard(request: Request, who: Principal | None) -> Response:
        return render_once(request, "dashboard.html", who, await the_dashboard.get())

    @page("/suites")
    async def suites(request: Request, who: Principal | None) -> Response:
        return render_once(request, "suites.html", who, await the_suites.get())

    @page("/suites/{name}")
    async def suite(request: Request, who: Principal | None) -> Response:
        name = request.path_params["name"]
        try:
            service.entry(name)
            if (shared := suite_pages.get(name)) is None:  # at most one per suite
                shared = suite_pages.put(name, Shared(_suite_page(name), dashboard_key))
            view, found = await shared.get()
        except UnknownSuite as exc:
            raise Refused(404, str(exc)) from None
        # The same for every reader until another run of the suite ends.
        key = (name, tuple(r.id for r in found.runs))
        if (history_html := service.caches.history_html.get(key)) is None:
            history_html = service.caches.history_html.put(
                key,
                pages.fragment(
                    "suite_history.html",
                    None,
                    history=found,
                    status_chart=charts.status_chart(
                        found.points, f"Results of {name}'s last runs"
                    ),
                    duration_chart=charts.duration_chart(
                        found.points, f"Duration of {name}'s last runs"
                    ),
                ),
            )
        return pages.render(request, "suite.html", who, suite=view, history_html=history_html)

    @page("/agents")
    async def agents(request: Request, who: Principal | None) -> Response:
        return pages.render(request, "agents.html", who, **await _agents(service))

    @page("/clusters")
    async def clusters(request: Request, who: Principal | None) -> Response:
        return pages.render(request, "clusters.html", who, **await _clusters(service))

    @page("/runs/{run_id}")
    async def run(request: Request, who: Principal | None) -> Response:
        view = await views.run(service, request.path_params["run_id"])
        if view is None:
            raise Refused(404, f"no run {request.path_params['run_id']!r}")
        return pages.render(request, "run.html", who, run=view, parts=pages.report_parts(view))

    @page("/runs/{run_id}/live", live=True)
    async def run_live(request: Request, who: Principal | None) -> Response:
        run_id = request.path_params["run_id"]
        if await service.store.runs.get(run_id) is None:
            raise Refused(404, f"no run {run_id!r}")

        async def render() -> tuple[str, bool]:
            view = await views.run(service, run_id)
            if view is None:
                return "", True
            html = pages.fragment("run_live.html", who, run=view, parts=pages.report_parts(view))
            return html, not view.active

        seen = -1

        async def changed() -> None:
            nonlocal seen
            seen = await next_change(service, run_id, seen)

        return live_stream(request, render, "live", changed)

    @page("/runs/{run_id}/files/{path:path}")
    async def run_file(request: Request, who: Principal | None) -> Response:
        """A file of the run's folder: its report files as they are, any
        other (stage output, collected logs) in the viewer, or as it is
        with `raw=1`."""
        run_id, relative = request.path_params["run_id"], request.path_params["path"]
        summary = await service.store.runs.get(run_id)
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
        offset = _int(q.get("offset"), 0)
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
        return pages.render(
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

    @page("/runs/{run_id}/output")
    async def output_page(request: Request, who: Principal | None) -> Response:
        """A stage's output by case, stage and host (as the API names it)."""
        q = request.query_params
        stage, host = q.get("stage", ""), q.get("host", "")
        if not stage or not host:
            raise Refused(404, "say which stage and host")
        link = views.output_link(request.path_params["run_id"], q.get("case") or None, stage, host)
        return RedirectResponse(link, status_code=303)

    @page("/admin")
    async def admin(request: Request, who: Principal | None) -> Response:
        if who is None or not who.role.allows(Role.ADMIN):
            raise Refused(403, "the admin page is for admins")
        return await admin_page(request, who, None)

    async def admin_page(
        request: Request, who: Principal, secret: tuple[str, str] | None
    ) -> Response:
        return pages.render(
            request,
            "admin.html",
            who,
            users=await service.auth.users(),
            agent_tokens=await service.auth.agent_tokens(),
            roles=[r.value for r in Role],
            audit=await service.store.audit.recent(limit=AUDIT_SHOWN),
            secret=secret,  # shown once, on the answer that made it only
        )

    # --- actions ----------------------------------------------------------------------

    @action("/suites/{name}/run")
    async def start(request: Request, who: Principal, form: dict[str, str]) -> Response:
        try:
            summary = await service.submit(request.path_params["name"], f"web:{who.name}")
        except UnknownSuite as exc:
            raise Refused(404, str(exc)) from None
        except Unrunnable as exc:
            raise Refused(409, str(exc)) from None
        await service.store.audit.record(
            who.name,
            "run.start",
            summary.id,
            address=_address(request),
            detail=request.path_params["name"],
        )
        return RedirectResponse(f"/runs/{quote(summary.id, safe='')}", status_code=303)

    @action("/runs/{run_id}/cancel")
    async def cancel(request: Request, who: Principal, form: dict[str, str]) -> Response:
        run_id = request.path_params["run_id"]
        try:
            await service.queue.cancel(run_id, who.name)
        except NotFound as exc:
            raise Refused(404, str(exc)) from None
        except NotActive:
            pass  # it has ended meanwhile: the page says so
        else:
            await service.store.audit.record(
                who.name, "run.cancel", run_id, address=_address(request)
            )
        return RedirectResponse(
            _local(form.get("back", f"/runs/{quote(run_id, safe='')}")), status_code=303
        )

    @action("/runs/{run_id}/rerun")
    async def rerun(request: Request, who: Principal, form: dict[str, str]) -> Response:
        try:
            summary = await service.rerun(
                request.path_params["run_id"], failed_only=form.get("failed_only") == "1"
            )
        except (NotFound, UnknownSuite) as exc:
            raise Refused(404, str(exc)) from None
        except Unrunnable as exc:
            raise Refused(409, str(exc)) from None
        await service.store.audit.record(
            who.name,
            "run.start",
            summary.id,
            address=_address(request),
            detail=f"rerun of {request.path_params['run_id']}",
        )
        return RedirectResponse(f"/runs/{quote(summary.id, safe='')}", status_code=303)

    async def admin_answer(
        request: Request, who: Principal, secret: tuple[str, str] | None
    ) -> Response:
        if secret is None:
            return RedirectResponse("/admin", status_code=303)
        return await admin_page(request, who, secret)

    @action("/admin/users", Role.ADMIN)
    async def add_user(request: Request, who: Principal, form: dict[str, str]) -> Response:
        try:
            await service.auth.add_user(
                form.get("name", ""),
                form.get("role", ""),
                form.get("password", ""),
                by=who.name,
            )
        except (AuthError, Conflict) as exc:
            raise Refused(400, str(exc)) from None
        return await admin_answer(request, who, None)

    @action("/admin/users/{name}/remove", Role.ADMIN)
    async def remove_user(request: Request, who: Principal, form: dict[str, str]) -> Response:
        try:
            await service.auth.remove_user(request.path_params["name"], by=who.name)
        except NotFound as exc:
            raise Refused(404, str(exc)) from None
        return await admin_answer(request, who, None)

    @action("/admin/users/{name}/token", Role.ADMIN)
    async def user_token(request: Request, who: Principal, form: dict[str, str]) -> Response:
        name = request.path_params["name"]
        try:
            token = await service.auth.create_user_token(name, by=who.name)
        except NotFound as exc:
            raise Refused(404, str(exc)) from None
        return await admin_answer(request, who, (f"API token for {name}", token))

    @action("/admin/users/{name}/revoke", Role.ADMIN)
    async def revoke_user(request: Request, who: Principal, form: dict[str, str]) -> Response:
        await service.auth.revoke_user_tokens(request.path_params["name"], by=who.name)
        return await admin_answer(request, who, None)

    @action("/admin/agents", Role.ADMIN)
    async def agent_token(request: Request, who: Principal, form: dict[str, str]) -> Response:
        name = form.get("name", "")
        try:
            token = await service.auth.create_agent_token(name, by=who.name)
        except (AuthError, Conflict) as exc:
            raise Refused(400, str(exc)) from None
        return await admin_answer(request, who, (f"agent token for {name}", token))

    @action("/admin/agents/{name}/revoke", Role.ADMIN)
    async def revoke_agent(request: Request, who: Principal, form: dict[str, str]) -> Response:
        await service.auth.revoke_agent_token(request.path_params["name"], by=who.name)
        return await admin_answer(request, who, None)


async def _suites(service: Service) -> dict[str, Any]:
    return {"suites": await views.suites(service)}


async def _agents(service: Service) -> dict[str, Any]:
    return {"agents": await views.agents(service)}


async def _clusters(service: Service) -> dict[str, Any]:
    return {
        "clusters": await views.clusters(service),
        "hypervisors": await views.hypervisors(service),
    }


def _sse(event: str, html: str) -> str:
    data = "\n".join(f"data: {line}" for line in html.splitlines()) or "data: "
    return f"event: {event}\n{data}\n\n"


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the first value of each)."""
    body = (await request.body())[: 64 * 1024].decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _same_origin(request: Request) -> bool:
    """No Origin nor Referer (an older browser, a script with a token), or ours."""
    return from_this_site(request.headers, required=False)


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else ""


def _local(target: str) -> str:
    """Only a path on this site (no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _int(text: str | None, default: int) -> int:
    try:
        return max(0, int(text)) if text is not None else default
    except ValueError:
        return default
