"""Published ports (portforward.py) on real sockets: bytes both ways, a
half-close passed on, a service that is not listening, a port already
taken, and a run's end cutting what is still open."""

from __future__ import annotations

import asyncio
import socket

import pytest

from phalanx.providers.portforward import ForwardError, Forwards

LOOPBACK = "127.0.0.1"


async def _echo_server() -> tuple[asyncio.Server, int]:
    """Echoes what it reads, upper-cased, and closes at the client's end."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data.upper())
            await writer.drain()
        writer.write(b"<bye>")
        writer.close()

    server = await asyncio.start_server(echo, LOOPBACK, 0)
    return server, int(server.sockets[0].getsockname()[1])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port = int(probe.getsockname()[1])
    return port


def test_a_published_port_relays_both_ways_and_passes_the_clients_end_on() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        server, target = await _echo_server()
        forwards = Forwards()
        published = _free_port()
        await forwards.add(LOOPBACK, published, LOOPBACK, target)
        try:
            reader, writer = await asyncio.open_connection(LOOPBACK, published)
            writer.write(b"hello")
            first = await asyncio.wait_for(reader.readexactly(5), 10)
            writer.write_eof()  # the service sees the end, says bye, and closes
            rest = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return first, rest
        finally:
            await forwards.close()
            server.close()

    assert asyncio.run(scenario()) == (b"HELLO", b"<bye>")


def test_a_service_not_listening_closes_the_clients_connection() -> None:
    async def scenario() -> bytes:
        forwards = Forwards()
        published = _free_port()
        await forwards.add(LOOPBACK, published, LOOPBACK, _free_port())
        try:
            reader, writer = await asyncio.open_connection(LOOPBACK, published)
            said = await asyncio.wait_for(reader.read(), 20)
            writer.close()
            return said
        finally:
            await forwards.close()

    assert asyncio.run(scenario()) == b""


def test_a_taken_port_is_an_error_naming_it_and_the_runs_end_cuts_open_connections() -> None:
    async def scenario() -> bytes:
        server, target = await _echo_server()
        forwards = Forwards()
        published = _free_port()
        await forwards.add(LOOPBACK, published, LOOPBACK, target)
        with pytest.raises(ForwardError, match=f"cannot publish {LOOPBACK}:{published} "):
            await forwards.add(LOOPBACK, published, LOOPBACK, target)
        reader, writer = await asyncio.open_connection(LOOPBACK, published)
        writer.write(b"x")
        await asyncio.wait_for(reader.readexactly(1), 10)
        await forwards.close()
        # Cut: the client reads its end, and nothing listens any more.
        said = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(LOOPBACK, published)
        server.close()
        return said

    assert asyncio.run(scenario()) == b""
