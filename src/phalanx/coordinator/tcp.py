"""The coordinator's listening sockets, for either server (server.py's
uvicorn, listener.py's websockets): bound before the server starts, so
that port 0 works and the port is known."""

from __future__ import annotations

import socket


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (`host`, `port`; 0: any free port), not yet listening."""
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and
    # accepted sockets inherit it. Without it Nagle holds every second small
    # message until the peer's delayed ACK, 40 ms per barrier.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock
