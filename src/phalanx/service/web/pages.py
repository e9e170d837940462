"""The web UI's routes: pages (GET), their live fragments (server-sent
events that htmx swaps in), and the forms' actions (POST only; each answers
with a redirect, so the pages work without JavaScript). One router per
area: login.py, lists.py, live.py, runs.py, admin.py; access.py holds what
they share (the web UI's state, who asks, a page and a form action).

Who: the login session cookie (or a user API token, as the API takes). A
state-changing request needs the role for it (403 otherwise), comes as a
POST, and is refused when its `Origin` names another site: with the
cookie's SameSite=Lax that keeps other sites from acting for a user.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from phalanx.service.app import Service
from phalanx.service.web import admin, lists, live, login, runs, views
from phalanx.service.web.access import Web
from phalanx.service.web.render import Pages
from phalanx.service.web.shared import Shared

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI, service: Service, *, session_cookie: str) -> None:
    """Add the web UI's routes and static files to the service's app."""
    app.state.web = Web(
        service=service,
        pages=Pages(),
        failures=app.state.store_failures,
        session_cookie=session_cookie,
        dashboard=Shared(lambda: views.dashboard(service), lambda: views.dashboard_key(service)),
        suites=Shared(lambda: lists.suites_data(service), lambda: views.dashboard_key(service)),
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_api_route("/report.css", report_css, methods=["GET"], include_in_schema=False)
    app.add_api_route("/favicon.ico", favicon, methods=["GET"], include_in_schema=False)
    for area in (login, live, lists, runs, admin):
        app.include_router(area.router)


async def report_css(request: Request) -> Response:
    from phalanx.report.html import stylesheet

    return Response(stylesheet(), media_type="text/css")


async def favicon(request: Request) -> Response:
    # Browsers ask for /favicon.ico whatever the page's <link rel="icon"> says.
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")
