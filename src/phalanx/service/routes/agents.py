"""Agents, clusters and hypervisors: what runs the runs."""

import dataclasses
from typing import Any

from fastapi import APIRouter

from phalanx.service.routes.deps import ListingsDep, Reader, ServiceDep

router = APIRouter()


@router.get("/api/agents", tags=["agents"])
async def agents(who: Reader, listings: ListingsDep) -> list[dict[str, Any]]:
    """Every agent connected now or recorded before: the Agents page's rows."""
    return await listings.agents.get()


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
