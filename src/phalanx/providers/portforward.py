"""Compose services' published `ports`: a listener on this machine's
`host_ip:published` whose every connection is relayed to the service's
address on the cluster's bridge. The engine's own forwarding is for the
networks it makes, and a container host sits in a namespace phalanx made,
so phalanx forwards, as the engine's userland proxy would: TCP only, for
as long as the run holds its hosts."""

from __future__ import annotations

import asyncio
import contextlib
import functools

CONNECT_TIMEOUT = 10.0  # seconds to reach the service for one connection
CLOSE_TIMEOUT = 5.0  # seconds for the relays to end once their sockets are closed
CHUNK = 1 << 16


class ForwardError(Exception):
    """A published port could not be listened on; the message says which and why."""


class Forwards:
    """The run's published ports and their open connections."""

    def __init__(self) -> None:
        self._servers: list[asyncio.Server] = []
        self._relays: set[asyncio.Task[None]] = set()
        self._sockets: set[asyncio.StreamWriter] = set()  # both ends of every relay

    async def add(self, host_ip: str, published: int, address: str, target: int) -> None:
        relay = functools.partial(self._relay, address, target)
        try:
            server = await asyncio.start_server(relay, host_ip, published, reuse_address=True)
        except OSError as exc:
            raise ForwardError(
                f"cannot publish {host_ip}:{published} (to {address}:{target}): {exc.strerror or exc}"
            ) from None
        self._servers.append(server)

    async def close(self) -> None:
        """No more listening, and every open connection cut."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        # Closed, not cancelled: a relay's reads end as at its peers' end
        # (and Python 3.11 reports a cancelled connection handler as an error).
        for end in list(self._sockets):
            end.close()
        if self._relays:
            await asyncio.wait(set(self._relays), timeout=CLOSE_TIMEOUT)
        for server in servers:
            await asyncio.wait_for(server.wait_closed(), CLOSE_TIMEOUT)

    async def _relay(
        self, address: str, target: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        self._sockets.add(writer)
        try:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(address, target), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError):
                return  # the client sees its connection closed, as with the engine's proxy
            self._sockets.add(up_writer)
            try:
                # Each way until its end (a half-close is passed on); a relay
                # lives as long as its two peers keep it, or until the run ends.
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
                self._sockets.discard(up_writer)
        finally:
            writer.close()
            self._sockets.discard(writer)
            self._relays.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
