"""Recording operations from Python tests: `phalanx.history.op`, the same
records `phalanx-op` writes from shell stages.

    from phalanx import history

    with history.op("write", 3, key="x"):
        store.put("x", 3)                 # returns: ok
    with history.op("read", key="x") as o:
        o.ok(store.get("x"))              # a read's value
    with history.op("cas", (3, 4), key="x") as o:
        if not store.cas("x", 3, 4):
            o.fail()                      # certainly did not happen

An exception leaving the block records `info` (it may have happened) and
goes on. Inside a stage each record goes to the host's agent, which sends
it to the coordinator: it joins the case's history from every host, on the
coordinator's clock (results.json, the run folder's history.jsonl). With
$PHALANX_HISTORY set, records are also JSON lines appended to that file,
one write() of one line each, so the threads and processes of a host share
the file.

Standard library only: it is imported inside stages.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HISTORY_ENV = "PHALANX_HISTORY"
AGENT_TIMEOUT = 30.0  # seconds for the agent to take a record

_UNSET: Any = object()


def append(path: str, record: dict[str, Any]) -> None:
    """One record, one line, appended with one write (O_APPEND)."""
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def in_stage() -> bool:
    """Whether this runs inside a phalanx stage, with an agent to record to."""
    return bool(os.environ.get("PHALANX_AGENT_SOCKET") and os.environ.get("PHALANX_STAGE_ID"))


def destination(path: str | None = None) -> str | None:
    """Why records cannot be kept here, or None when they can: inside a
    stage (the agent), or in a file (`path`, $PHALANX_HISTORY)."""
    if in_stage() or path or os.environ.get(HISTORY_ENV):
        return None
    return f"not inside a phalanx stage, and ${HISTORY_ENV} is not set"


def record(entry: dict[str, Any], path: str | None = None) -> None:
    """Keep one record: to the agent inside a stage (it is taken before this
    returns), and to the file `path` or $PHALANX_HISTORY when one is named.
    Raises OSError when neither takes it."""
    where = path or os.environ.get(HISTORY_ENV)
    if where:
        append(where, entry)
    if in_stage():
        from phalanx.stagesocket import request

        try:
            answer = request({"op": "history", "records": [entry]}, AGENT_TIMEOUT)
        except (OSError, ValueError) as exc:
            if not where:
                raise OSError(f"the agent did not take the record: {exc}") from None
            return
        if not answer.get("ok") and not where:
            raise OSError(f"the agent refused the record: {answer.get('error')}")
    elif not where:
        raise OSError(f"no history to record to: {destination()}")


def process_name(client: str | None) -> str:
    """`HOST/CLIENT`: the host's phalanx name (or hostname) and the client
    given, else $PHALANX_CLIENT, else this process and thread."""
    host = os.environ.get("PHALANX_HOSTNAME") or socket.gethostname()
    if client is None:
        client = os.environ.get("PHALANX_CLIENT") or f"{os.getpid()}.{threading.get_ident()}"
    return f"{host}/{client}"


class Operation:
    """The operation in flight inside a `with history.op(...)` block."""

    def __init__(self, f: str, value: Any) -> None:
        self.f = f
        self.sent = value
        self.outcome: str | None = None
        self.value: Any = _UNSET

    def ok(self, value: Any = _UNSET) -> None:
        """It happened; for a read, `value` is what was read."""
        self.outcome, self.value = "ok", value

    def fail(self) -> None:
        """It certainly did not happen."""
        self.outcome = "fail"

    def info(self) -> None:
        """It may or may not have happened (a timeout, a lost connection)."""
        self.outcome = "info"


READS = ("read", "read-set")


@contextmanager
def op(
    f: str,
    value: Any = None,
    *,
    key: Any = None,
    client: str | None = None,
    path: str | None = None,
) -> Iterator[Operation]:
    """Record one operation around the block that performs it."""
    if (why := destination(path)) is not None:
        raise RuntimeError(f"phalanx.history.op: {why}")
    where = path
    base = {"process": process_name(client), "f": f, "key": key}
    sent = None if f in READS else value
    record({**base, "type": "invoke", "value": sent, "time": time.time()}, where)
    current = Operation(f, sent)
    try:
        yield current
    except BaseException:
        _complete(where, base, current, "info")
        raise
    if current.outcome is None and f in READS and current.value is _UNSET:
        # A read left without its value: what it saw is unknown.
        current.info()
    _complete(where, base, current, current.outcome or "ok")


def _complete(where: str | None, base: dict[str, Any], current: Operation, outcome: str) -> None:
    if outcome == "ok" and current.f in READS:
        value = current.value
    elif outcome != "ok" and current.f in READS:
        value = None
    else:
        value = current.sent
    record({**base, "type": outcome, "value": value, "time": time.time()}, where)
