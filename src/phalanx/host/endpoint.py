"""A coordinator's WebSocket endpoint from the URL a user gives: the
service's own address (`http://HOST:PORT`, as `phalanx submit` takes it)
or the endpoint itself (`ws://HOST:PORT/agent`)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

# The coordinator's WebSocket endpoints: for agents, and for hypervisor daemons.
AGENT_PATH = "/agent"
HYPERVISOR_PATH = "/hypervisor"

SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


class BadURL(ValueError):
    """A coordinator URL that names no WebSocket endpoint; says what was expected."""


def websocket_url(url: str, path: str) -> str:
    """`url` as ws(s)://HOST:PORT…`path`: http becomes ws, https wss, and
    `path` (`/agent`, `/hypervisor`) is added unless the URL ends with it."""
    parts = urlsplit(url.strip())
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise BadURL(f"expected http(s)://HOST:PORT or ws(s)://HOST:PORT{path}, got {url!r}")
    base = parts.path.rstrip("/")
    if not base.endswith(path):
        base += path
    return urlunsplit((scheme, parts.netloc, base, parts.query, ""))
