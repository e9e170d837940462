"""Agents, clusters and hypervisors: what runs the runs."""

import dataclasses
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from phalanx.service.routes.deps import ListingsDep, Reader, ServiceDep

router = APIRouter()


@router.get("/api/agents", tags=["agents"], response_model=list[dict[str, Any]])
async def agents(who: Reader, listings: ListingsDep) -> Response:
    """Every agent connected now or recorded before: the Agents page's rows."""
    found = await listings.agents.get()
    return Response(listings.encoded("agents", found), media_type="application/json")


@router.get("/api/clusters", tags=["clusters"])
async def clusters(who: Reader, service: ServiceDep) -> list[dict[str, Any]]:
    return [
        {
            "name": cluster.name,
            "repo": catalog.source,
            "provider": cluster.provider or "agents",
            "hosts": [h.name for h in cluster.hosts],
        }
        for catalog, cluster in service.clusters()
    ]


@router.get("/api/hypervisors", tags=["clusters"])
async def hypervisors(who: Reader, service: ServiceDep) -> list[dict[str, Any]]:
    """The hypervisors that run VM clusters: state, capacity, clusters, VM states."""
    if service.hypervisors is None:
        return []
    return [dataclasses.asdict(view) for view in service.hypervisors.views()]
