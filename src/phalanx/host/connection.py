"""Staying connected to the coordinator: what the agent and the hypervisor
daemon share. One WebSocket at a time, opened outbound with a bearer token;
reconnects with capped exponential backoff and jitter; a refusal (HTTP
401/403, an untrusted certificate, close code 4001) ends it for good."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

EXIT_REFUSED = 2
EXIT_GAVE_UP = 3
CLOSE_REFUSED = 4001  # the coordinator's application close code: do not retry
# What a person watching a daemon wants to know without -v: connected, the
# coordinator unreachable (and that it retries), the connection lost. Said
# once per change, not on every retry; the daemons' mains let it through.
STATUS = logging.getLogger("phalanx.status")


def refusal(exc: ConnectionClosed) -> str | None:
    """Why the coordinator refused this connection for good; None if it did not."""
    if exc.rcvd is not None and exc.rcvd.code == CLOSE_REFUSED:
        return exc.rcvd.reason or "refused"
    return None


async def keep_connected(
    url: str,
    token: str,
    session: Callable[[ClientConnection], Awaitable[str | None]],
    stopping: asyncio.Event,
    log: logging.Logger,
    *,
    who: str = "agent",
    backoff_max: float = 5.0,
    give_up_after: float | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """Run `session` on one connection after another until `stopping` is set
    (0), the coordinator refuses (`EXIT_REFUSED`) or has been unreachable for
    `give_up_after` seconds (`EXIT_GAVE_UP`). `session` returns why the
    coordinator refused, or None. The token is only ever in the header."""
    delay = 0.05
    loop = asyncio.get_running_loop()
    disconnected_since = loop.time()
    connected_once = False
    # Each kind of trouble is said once until the next connection: a service
    # that answers HTTP errors while it stops, then is gone, says both.
    said_unreachable = said_http = False
    # websockets refuses an ssl argument on a ws:// URL: give it only for wss.
    tls: dict[str, Any] = {"ssl": ssl_context} if ssl_context is not None else {}
    while not stopping.is_set():
        refused: str | None = None
        opened = False
        try:
            async with connect(
                url,
                additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=10,
                ping_interval=5,
                ping_timeout=10,
                max_size=64 * 1024 * 1024,
                compression=None,  # the coordinator takes none (see coordinator/server.py)
                **tls,
            ) as ws:
                delay = 0.05
                STATUS.info(
                    "%s to the coordinator at %s",
                    "reconnected" if connected_once else "connected",
                    url,
                )
                connected_once, opened = True, True
                said_unreachable = said_http = False
                refused = await session(ws)
                disconnected_since = loop.time()
        except InvalidStatus as exc:
            if exc.response.status_code in (401, 403):
                log.error(
                    "the coordinator refused this %s (HTTP %s)", who, exc.response.status_code
                )
                return EXIT_REFUSED
            if not said_http:
                said_http = True
                STATUS.warning(
                    "%s answered HTTP %s, not a WebSocket; retrying",
                    url,
                    exc.response.status_code,
                )
        except ssl.SSLCertVerificationError as exc:
            # Not a network blip: retrying cannot make the certificate trusted.
            log.error(
                "cannot verify the coordinator's TLS certificate (%s); "
                "give the CA that issued it with --ca FILE",
                exc.verify_message or exc,
            )
            return EXIT_REFUSED
        except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
            log.info("connection to %s lost: %s", url, exc)
            if opened:
                disconnected_since = loop.time()
                if not stopping.is_set():
                    STATUS.warning("lost the connection to the coordinator (%s); reconnecting", exc)
            elif not said_unreachable and not stopping.is_set():
                said_unreachable = True
                STATUS.warning(
                    "cannot reach the coordinator at %s (%s); retrying every %gs at most%s",
                    url,
                    exc,
                    backoff_max,
                    f", for {give_up_after:g}s" if give_up_after is not None else "",
                )
        else:
            if refused is None and not stopping.is_set():
                STATUS.warning("lost the connection to the coordinator; reconnecting")
        if refused is not None:
            log.error("the coordinator refused this %s: %s", who, refused)
            return EXIT_REFUSED
        if stopping.is_set():
            break
        if give_up_after is not None and loop.time() - disconnected_since > give_up_after:
            log.error("no coordinator for %.0fs; giving up", give_up_after)
            return EXIT_GAVE_UP
        await asyncio.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, backoff_max)
    return 0
