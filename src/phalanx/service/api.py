"""The service's REST API (FastAPI, OpenAPI at /docs), its health check,
and the agents' WebSocket endpoint, in one ASGI app.

Auth: `Authorization: Bearer <user API token>` (`phalanx user token`) or a
login session cookie. Reading needs a user, unless `anonymous_read` is on;
every write needs an operator or an admin. An agent token is never a user's
token (service/auth.py keeps the kinds apart). Every error is JSON with a
`message`.
"""

import asyncio
import dataclasses
import json
import math
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from phalanx import layout
from phalanx.coordinator.app import agent_routes
from phalanx.coordinator.auth import bearer
from phalanx.coordinator.scripts import script_routes
from phalanx.service.agents import known
from phalanx.service.apidocs import add_api_docs
from phalanx.service.app import Service, UnknownSuite, Unrunnable
from phalanx.service.auth import Principal, Role
from phalanx.service.caches import Lru
from phalanx.service.definitions import Catalog, SuiteEntry
from phalanx.service.documents import next_change, run_document
from phalanx.service.origin import from_this_site
from phalanx.service.queue import ALERTS_FILE, NotActive
from phalanx.service.unavailable import add_store_failure_handler, message
from phalanx.service.web.shared import Shared
from phalanx.service.web.views import dashboard_key
from phalanx.store.errors import NotFound
from phalanx.store.runs import RunSummary

SESSION_COOKIE = "phalanx_session"
MAX_READ = 1024 * 1024  # one ranged read of an output file
DEFAULT_READ = 64 * 1024
KEEPALIVE = 15.0  # seconds between an event stream's signs of life when nothing changes
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# How often a long-lived stream checks that its reader may still read: a
# removed user's or revoked token's streams end within this.
RECHECK_EVERY = 0.5

RunId = Annotated[str, PathParam(min_length=1, max_length=200)]


class RerunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failed_only: bool = False  # only the cases that did not pass (or skip)


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    password: str


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def foreign_write(request: Request) -> None:
    """Refuse a cookie-authenticated write that does not come from this
    service's own pages (service/origin.py)."""
    if not from_this_site(request.headers, required=True):
        raise ApiError(
            403, "a signed-in browser's write came from another site (or said from none)"
        )


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else ""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        title="phalanx",
        summary="The phalanx coordinator service.",
        version="1",
        docs_url=None,  # served by apidocs, from the package: no CDN
        redoc_url=None,
    )
    add_api_docs(app)
    failures = add_store_failure_handler(app)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        return _error(422, "; ".join(problems) or "invalid request")

    # --- who asks -------------------------------------------------------------------

    async def principal(request: Request) -> Principal | None:
        header = request.headers.get("authorization")
        if header is not None:
            token = bearer(header)
            found = await service.auth.verify_user_token(token) if token else None
            if found is None:
                raise ApiError(401, "the bearer token is not a valid user API token")
            return found
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            if request.method not in SAFE_METHODS:
                foreign_write(request)
            return await service.auth.session_user(cookie)
        return None

    async def reader(who: Annotated[Principal | None, Depends(principal)]) -> Principal | None:
        if who is None and not service.config.anonymous_read:
            raise ApiError(401, "sign in or send an API token (Authorization: Bearer …)")
        return who

    async def operator(who: Annotated[Principal | None, Depends(principal)]) -> Principal:
        if who is None:
            raise ApiError(401, "sign in or send an API token (Authorization: Bearer …)")
        if not who.role.allows(Role.OPERATOR):
            raise ApiError(403, f"{who.name} is a {who.role.value}: this needs an operator")
        return who

    async def admin(who: Annotated[Principal, Depends(operator)]) -> Principal:
        if not who.role.allows(Role.ADMIN):
            raise ApiError(403, f"{who.name} is a {who.role.value}: this needs an admin")
        return who

    # Lists many readers ask for at once, gathered once for them all
    # (web/shared.py): runs by their query, and the agents.
    listings: Lru[tuple[str | None, str | None, int], Shared[list[dict[str, Any]]]] = Lru(64)

    async def agents_json() -> list[dict[str, Any]]:
        return [agent.to_json() for agent in await known(service)]

    every_agent = Shared(agents_json, lambda: dashboard_key(service))

    Reader = Annotated[Principal | None, Depends(reader)]
    Operator = Annotated[Principal, Depends(operator)]
    Admin = Annotated[Principal, Depends(admin)]

    # --- routes -----------------------------------------------------------------------

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/metrics", tags=["service"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics (open like `/healthz`: counts, no names or secrets)."""
        if service.metrics is None:
            return JSONResponse({"message": "metrics are not enabled"}, status_code=404)
        from phalanx.service.metrics import CONTENT_TYPE

        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/api/login", tags=["service"])
    async def login(body: LoginRequest, request: Request) -> JSONResponse:
        """Sign in with a name and password; the session is a cookie the
        browser keeps (HttpOnly, SameSite=Lax, Secure when served over TLS).
        Too many failures for a name or from an address: 429 and a wait
        (Retry-After) that doubles with each further failure."""
        if not from_this_site(request.headers, required=False):
            raise ApiError(403, "a sign-in came from another site")
        who = await service.auth.login(body.name, body.password, client_address(request))
        if isinstance(who, float):
            if who > 0:
                return JSONResponse(
                    {"message": f"too many failed sign-ins: try again in {who:.0f} s"},
                    status_code=429,
                    headers={"Retry-After": str(max(1, math.ceil(who)))},
                )
            raise ApiError(401, "wrong name or password")
        response = JSONResponse({"name": who.name, "role": who.role.value})
        await open_session(service, response, who)
        return response

    @app.post("/api/logout", tags=["service"])
    async def logout(request: Request) -> JSONResponse:
        """End this browser's session (a no-op without one)."""
        if cookie := request.cookies.get(SESSION_COOKIE):
            foreign_write(request)
            who = await service.auth.session_user(cookie)
            await service.auth.end_session(cookie)
            if who is not None:
                await service.store.audit.record(
                    who.name, "logout", who.name, address=client_address(request)
                )
        response = JSONResponse({"message": "signed out"})
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/api/suites", tags=["suites"])
    async def suites(who: Reader) -> list[dict[str, Any]]:
        return [_suite(service, c, e) for c, e in service.entries()]

    @app.get("/api/suites/{name}", tags=["suites"])
    async def suite(name: str, who: Reader) -> dict[str, Any]:
        catalog, entry = _entry(service, name)
        document = _suite(service, catalog, entry)
        if entry.suite is not None:
            document["cases"] = [c.name for c in entry.suite.cases]
            document["hosts"] = [h.name for h in entry.suite.hosts]
        return document

    @app.post("/api/suites/{name}/runs", status_code=201, tags=["runs"])
    async def submit(name: str, who: Operator, request: Request) -> dict[str, Any]:
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

    @app.get("/api/runs", tags=["runs"])
    async def runs(
        who: Reader,
        suite: Annotated[str | None, Query(max_length=200)] = None,
        status: Annotated[str | None, Query(max_length=40)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[dict[str, Any]]:
        key = (suite, status, limit)
        if (shared := listings.get(key)) is None:

            async def gather() -> list[dict[str, Any]]:
                found = await service.store.runs.recent(suite=suite, status=status, limit=limit)
                return [_summary(s, service.queue.waiting(s.id)) for s in found]

            shared = listings.put(key, Shared(gather, lambda: dashboard_key(service)))
        return await shared.get()

    @app.get("/api/runs/{run_id}", tags=["runs"], response_model=dict[str, Any])
    async def run(run_id: RunId, who: Reader) -> Response:
        """The run's results.json document (while it runs: as far as it has
        come), with `queued_at`, `trigger`, `waiting` and `alerts`."""
        found = await run_document(service, run_id)
        if found is None:
            raise ApiError(404, f"no run {run_id!r}")
        summary, document = found
        document["alerts"] = await _alerts(summary.folder)
        # JSON types already (report/json.py): encoded as they are, not
        # walked again by FastAPI's encoder (most of this route's CPU).
        return Response(orjson.dumps(document), media_type="application/json")

    @app.get(
        "/api/runs/{run_id}/events",
        tags=["runs"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events(run_id: RunId, who: Reader, request: Request) -> StreamingResponse:
        """Server-sent events: the run's document (as `GET /api/runs/{id}`)
        each time it changes, until the run has ended, or until the reader
        may no longer read (signed out, removed, token revoked). If the
        database cannot be read, an `unavailable` event (its `message`
        says why) ends it."""
        if await service.store.runs.get(run_id) is None:
            raise ApiError(404, f"no run {run_id!r}")

        async def may_read() -> bool:
            try:
                return await reader(await principal(request)) is not None or who is None
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
            failures.guard(stream(), unavailable), media_type="text/event-stream"
        )

    @app.post("/api/runs/{run_id}/cancel", status_code=202, tags=["runs"])
    async def cancel(run_id: RunId, who: Operator, request: Request) -> dict[str, Any]:
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

    @app.post("/api/runs/{run_id}/rerun", status_code=201, tags=["runs"])
    async def rerun(
        run_id: RunId, who: Operator, http: Request, request: RerunRequest | None = None
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

    @app.get("/api/audit", tags=["service"])
    async def audit(
        who: Admin,
        action: Annotated[str | None, Query(max_length=50)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[dict[str, Any]]:
        """The audit log, newest first (admins): sign-ins, users and tokens
        made or removed, runs started and cancelled; by whom, from where."""
        return [
            {**dataclasses.asdict(e), "at": e.at.isoformat()}
            for e in await service.store.audit.recent(limit=limit, action=action)
        ]

    @app.get(
        "/api/runs/{run_id}/output",
        tags=["runs"],
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    async def output(
        run_id: RunId,
        who: Reader,
        stage: Annotated[str, Query(min_length=1, max_length=200)],
        host: Annotated[str, Query(min_length=1, max_length=253)],
        case: Annotated[str | None, Query(max_length=200)] = None,
        offset: Annotated[int, Query(ge=0, le=2**53)] = 0,
        length: Annotated[int, Query(ge=1, le=MAX_READ)] = DEFAULT_READ,
    ) -> Response:
        summary = await service.store.runs.get(run_id)
        if summary is None:
            raise ApiError(404, f"no run {run_id!r}")
        if summary.folder is None:
            raise ApiError(404, f"run {run_id!r} has no files")
        folder = summary.folder.resolve()
        target = (folder / layout.output_path(case or None, stage, host)).resolve()
        if not target.is_relative_to(folder):
            raise ApiError(400, "that output is not inside the run's folder")
        try:
            chunk, size = await asyncio.to_thread(_read, target, offset, length)
        except OSError:  # missing, a folder, a name too long for the file system
            raise ApiError(404, "no output for that case, stage and host") from None
        return Response(
            chunk,
            media_type="application/octet-stream",
            headers={"X-Phalanx-Offset": str(offset), "X-Phalanx-Size": str(size)},
        )

    @app.get("/api/agents", tags=["agents"])
    async def agents(who: Reader) -> list[dict[str, Any]]:
        """Every agent connected now or recorded before: the Agents page's rows."""
        return await every_agent.get()

    @app.get("/api/clusters", tags=["clusters"])
    async def clusters(who: Reader) -> list[dict[str, Any]]:
        return [
            {
                "name": cluster.name,
                "repo": catalog.source,
                "provider": cluster.provider or "agents",
                "hosts": [h.name for h in cluster.hosts],
            }
            for catalog, cluster in service.clusters()
        ]

    @app.get("/api/hypervisors", tags=["clusters"])
    async def hypervisors(who: Reader) -> list[dict[str, Any]]:
        """The hypervisors that run VM clusters: state, capacity, clusters, VM states."""
        if service.hypervisors is None:
            return []
        return [dataclasses.asdict(view) for view in service.hypervisors.views()]

    app.router.routes.extend(agent_routes(service.hub))
    if service.hypervisors is not None:
        from starlette.routing import WebSocketRoute

        from phalanx.host.endpoint import HYPERVISOR_PATH

        app.router.routes.append(WebSocketRoute(HYPERVISOR_PATH, service.hypervisors.serve))
    app.router.routes.extend(
        script_routes(
            service.queue.roots_for, service.queue.root_of, service.script_keys, service.hub
        )
    )
    from phalanx.service.web import mount  # the web UI: pages on the same data

    mount(app, service, session_cookie=SESSION_COOKIE)
    return app


async def open_session(service: Service, response: Response, who: Principal) -> None:
    """Sign `who` in on this response: a new session in its cookie
    (HttpOnly, SameSite=Lax, Secure when served over TLS)."""
    response.set_cookie(
        SESSION_COOKIE,
        await service.auth.create_session(who.name),
        max_age=int(service.auth.session_ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=service.config.tls_cert is not None,
    )


def _entry(service: Service, name: str) -> tuple[Catalog, SuiteEntry]:
    try:
        return service.entry(name)
    except UnknownSuite as exc:
        raise ApiError(404, str(exc)) from None


def _suite(service: Service, catalog: Catalog, entry: SuiteEntry) -> dict[str, Any]:
    suite = entry.suite
    nxt = service.next_runs.get(entry.name)
    return {
        "name": entry.name,
        "repo": catalog.source,
        "ok": entry.ok,
        "last_good": entry.last_good,
        "errors": [str(e) for e in entry.errors],
        "cluster": suite.cluster.name if suite is not None else None,
        "schedule": suite.schedule if suite is not None else None,
        "next_run": nxt.isoformat() if nxt is not None else None,
        "description": suite.description if suite is not None else "",
    }


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


def _read(path: Path, offset: int, length: int) -> tuple[bytes, int]:
    with path.open("rb") as f:
        size = f.seek(0, 2)
        f.seek(min(offset, size))
        return f.read(length), size
