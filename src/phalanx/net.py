"""Network faults from a Python test, as `phalanx-net` gives them to scripts:

    import phalanx.net

    phalanx.net.partition(["a", "b"], ["c", "d"])  # a, b reach only each other
    phalanx.net.isolate("c")
    phalanx.net.slow("c", "200ms")  # or 0.2 (seconds)
    phalanx.net.heal()

Hosts are named by full name, short name or alias. Each call returns once
the fault holds, and raises `NetFaultError` saying why when it cannot be
made (hosts without a network of their own, an unknown host). Every fault
is healed when the case ends. Standard library only: this runs in the test.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from phalanx.host.netclient import ask, parse_delay

__all__ = ["NetFaultError", "heal", "isolate", "partition", "slow"]


class NetFaultError(RuntimeError):
    """The fault could not be made; the message says why."""


def partition(*groups: Iterable[str], timeout: float | None = None) -> None:
    """Hosts of one group reach only each other; a host named in no group
    reaches no other host. Replaces the partition made before."""
    _do({"action": "partition", "groups": [_names(group) for group in groups]}, timeout)


def isolate(host: str, timeout: float | None = None) -> None:
    """`host` reaches no other host (and no other host reaches it)."""
    _do({"action": "isolate", "host": str(host)}, timeout)


def slow(host: str, delay: float | str, timeout: float | None = None) -> None:
    """Every packet `host` sends waits `delay` more: seconds, or a text with
    its unit (`"200ms"`)."""
    try:
        seconds = parse_delay(delay)
    except ValueError as exc:
        raise NetFaultError(str(exc)) from None
    _do({"action": "slow", "host": str(host), "delay": seconds}, timeout)


def heal(timeout: float | None = None) -> None:
    """Undo every fault (a no-op when there is none)."""
    _do({"action": "heal"}, timeout)


def _names(group: Iterable[str]) -> list[str]:
    if isinstance(group, str):  # "a,b", as on the command line
        return [name.strip() for name in group.split(",")]
    return [str(name) for name in group]


def _do(message: dict[str, Any], timeout: float | None) -> None:
    if message.get("groups") is not None and not message["groups"]:
        raise NetFaultError("partition needs at least one group of hosts")
    refused = ask(message, timeout)
    if refused is not None:
        raise NetFaultError(f"phalanx.net {message['action']}: {refused}")
