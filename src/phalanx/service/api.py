"""The service's REST API (FastAPI, OpenAPI at /docs), its health check,
and the agents' WebSocket endpoint, in one ASGI app.

Auth: `Authorization: Bearer <user API token>` (`phalanx user token`) or a
login session cookie. Reading needs a user, unless `anonymous_read` is on;
every write needs an operator or an admin. An agent token is never a user's
token (service/auth.py keeps the kinds apart). Every error is JSON with a
`message`.

The routes are routers, one module per area, under service/routes/; they
read the service from the app's state through FastAPI dependencies.
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from phalanx.coordinator.app import agent_routes, daemon_route
from phalanx.coordinator.scripts import SuiteFiles, script_routes
from phalanx.service.apidocs import add_api_docs
from phalanx.service.app import Service
from phalanx.service.routes import agents, events, files, runs, suites
from phalanx.service.routes import service as service_routes
from phalanx.service.routes.deps import SESSION_COOKIE, ApiError, open_session
from phalanx.service.routes.listings import Listings
from phalanx.service.unavailable import add_store_failure_handler

__all__ = ["SESSION_COOKIE", "ApiError", "create_app", "open_session"]


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
    # The routers' dependencies read the service from here (routes/deps.py).
    app.state.service = service
    app.state.listings = Listings(service)
    add_api_docs(app)
    add_store_failure_handler(app)

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

    for area in (service_routes, suites, runs, events, files, agents):
        app.include_router(area.router)

    app.router.routes.extend(agent_routes(service.hub))
    if service.hypervisors is not None:
        from phalanx.host.endpoint import HYPERVISOR_PATH

        app.router.routes.append(daemon_route(HYPERVISOR_PATH, service.hypervisors.serve))
    app.router.routes.extend(
        script_routes(
            SuiteFiles(
                service.queue.roots_for, service.queue.root_of, service.script_keys, service.hub
            )
        )
    )
    from phalanx.service.web import mount  # the web UI: pages on the same data

    mount(app, service, session_cookie=SESSION_COOKIE)
    return app
