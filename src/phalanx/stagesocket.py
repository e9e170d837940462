"""The stage's side of its agent's local socket: one JSON request, one
JSON answer, pushed back when it is ready. What the in-stage commands
(`phalanx-sync`, `phalanx-net`, `phalanx-op`...) and `phalanx.history.op`
share. Standard library only: it is imported inside stages.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any


def request(message: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """One request to the agent; raises TimeoutError or OSError."""
    path = os.environ.get("PHALANX_AGENT_SOCKET")
    if not path:
        raise OSError("PHALANX_AGENT_SOCKET is not set: not inside a phalanx stage")
    message = {**message, "stage_id": os.environ.get("PHALANX_STAGE_ID", "")}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(message).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("the agent closed the connection")
            reply += chunk
    answer: dict[str, Any] = json.loads(reply)
    return answer


def _default_timeout() -> float:
    return float(os.environ.get("PHALANX_STAGE_TIMEOUT", "600"))
