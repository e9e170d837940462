"""The coordinator's ASGI application. `phalanx run` serves only the agent
endpoint; `phalanx serve` mounts the same route beside the API and web UI."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.routing import BaseRoute, WebSocketRoute

from phalanx.coordinator.agents import AgentHub
from phalanx.host.endpoint import AGENT_PATH, HYPERVISOR_PATH

__all__ = ["AGENT_PATH", "HYPERVISOR_PATH", "agent_app", "agent_routes"]


def agent_routes(hub: AgentHub) -> list[WebSocketRoute]:
    return [WebSocketRoute(AGENT_PATH, hub.serve)]


def agent_app(hub: AgentHub, routes: Sequence[BaseRoute] = ()) -> Starlette:
    return Starlette(routes=[*agent_routes(hub), *routes])
