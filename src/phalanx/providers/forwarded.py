"""Connections that reach the coordinator through an ssh host's reverse port
forward, while they are open.

This process itself holds the coordinator-side end of each (the ssh
provider connects for the forward), so looking it up in /proc names this
process, not the client. Its client is on the host: a process there that
connected from `client_port` to the forwarded `server_port` on the host's
loopback. The host's agent can tell who that is (coordinator/vouching.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Forwarded:
    """A forwarded connection as its host sees it."""

    agent: str  # the name of the host's agent
    client_port: int  # the client's port on the host
    server_port: int  # the forward's listening port on the host


# (local port, coordinator port) of this process's end -> the connection on the host
_OPEN: dict[tuple[int, int], Forwarded] = {}


def opened(local_port: int, coordinator_port: int, forwarded: Forwarded) -> None:
    _OPEN[(local_port, coordinator_port)] = forwarded


def closed(local_port: int, coordinator_port: int) -> None:
    _OPEN.pop((local_port, coordinator_port), None)


def through(local_port: int, coordinator_port: int) -> Forwarded | None:
    """The forwarded connection whose coordinator-side end is this
    process's socket from `local_port` to `coordinator_port`, if any."""
    return _OPEN.get((local_port, coordinator_port))
