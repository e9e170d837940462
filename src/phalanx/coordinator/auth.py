"""Agent tokens: one bearer token per agent, kept only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable
from typing import Protocol


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenVerifier(Protocol):
    """What the hub asks of a bearer token: the host (agent name) it admits,
    or None. `TokenBook` answers at once; the service's answer comes from
    its store, so it may be awaitable."""

    def host_for(self, token: str | None) -> str | Awaitable[str | None] | None: ...


class TokenBook:
    def __init__(self) -> None:
        self._hosts: dict[str, str] = {}  # sha256(token) -> host

    def issue(self, host: str) -> str:
        token = secrets.token_urlsafe(32)
        self.add(host, token)
        return token

    def add(self, host: str, token: str) -> None:
        self._hosts[_digest(token)] = host

    def revoke(self, token: str) -> None:
        self._hosts.pop(_digest(token), None)

    def __len__(self) -> int:
        return len(self._hosts)

    def host_for(self, token: str | None) -> str | None:
        if not token:
            return None
        return self._hosts.get(_digest(token))


def bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None
