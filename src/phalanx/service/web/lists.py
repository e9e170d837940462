"""The pages that list what the service knows: the dashboard, suites (and
one suite's history), agents, clusters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from phalanx.service.app import Service, UnknownSuite
from phalanx.service.auth import Principal
from phalanx.service.web import charts, views
from phalanx.service.web.access import Refused, Web, page

router = APIRouter()


@page(router, "/")
async def dashboard(web: Web, request: Request, who: Principal | None) -> Response:
    return web.render_once(request, "dashboard.html", who, await web.dashboard.get())


@page(router, "/suites")
async def suites(web: Web, request: Request, who: Principal | None) -> Response:
    return web.render_once(request, "suites.html", who, await web.suites.get())


@page(router, "/suites/{name}")
async def suite(web: Web, request: Request, who: Principal | None) -> Response:
    name = request.path_params["name"]
    service = web.service
    try:
        service.entry(name)
        gathered = await web.suite_page(name).get()
    except UnknownSuite as exc:
        raise Refused(404, str(exc)) from None
    view, found = gathered
    # The same for every reader until another run of the suite ends.
    key = (name, tuple(r.id for r in found.runs))
    if (history_html := service.caches.history_html.get(key)) is None:
        history_html = service.caches.history_html.put(
            key,
            web.pages.fragment(
                "suite_history.html",
                None,
                history=found,
                status_chart=charts.status_chart(found.points, f"Results of {name}'s last runs"),
                duration_chart=charts.duration_chart(
                    found.points, f"Duration of {name}'s last runs"
                ),
            ),
        )
    context = {"suite": view, "history_html": history_html}
    return web.render_once(request, "suite.html", who, gathered, context)


@page(router, "/agents")
async def agents(web: Web, request: Request, who: Principal | None) -> Response:
    return web.pages.render(request, "agents.html", who, **await agents_data(web.service))


@page(router, "/clusters")
async def clusters(web: Web, request: Request, who: Principal | None) -> Response:
    return web.pages.render(request, "clusters.html", who, **await clusters_data(web.service))


async def suites_data(service: Service) -> dict[str, Any]:
    return {"suites": await views.suites(service)}


async def agents_data(service: Service) -> dict[str, Any]:
    return {"agents": await views.agents(service)}


async def clusters_data(service: Service) -> dict[str, Any]:
    return {
        "clusters": await views.clusters(service),
        "hypervisors": await views.hypervisors(service),
    }
