"""The suites the service knows (`/api/suites`)."""

from typing import Any

from fastapi import APIRouter

from phalanx.service.app import Service, UnknownSuite
from phalanx.service.definitions import Catalog, SuiteEntry
from phalanx.service.routes.deps import ApiError, Reader, ServiceDep

router = APIRouter(tags=["suites"])


@router.get("/api/suites")
async def suites(who: Reader, service: ServiceDep) -> list[dict[str, Any]]:
    return [_suite(service, c, e) for c, e in service.entries()]


@router.get("/api/suites/{name}")
async def suite(name: str, who: Reader, service: ServiceDep) -> dict[str, Any]:
    catalog, entry = _entry(service, name)
    document = _suite(service, catalog, entry)
    if entry.suite is not None:
        document["cases"] = [c.name for c in entry.suite.cases]
        document["hosts"] = [h.name for h in entry.suite.hosts]
    return document


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
