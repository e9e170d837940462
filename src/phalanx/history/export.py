"""A case's history as files in the run folder: phalanx's JSON lines
(what `phalanx check` reads) and Jepsen's history.edn (what Jepsen's tools
read), one record per event, on the coordinator's clock."""

from __future__ import annotations

import json

from phalanx.history.ops import Event, hashable
from phalanx.model import CaseHistory

FIELDS = ("process", "type", "f", "key", "value", "time", "host")


def jsonl(history: CaseHistory) -> str:
    return "".join(
        json.dumps({name: getattr(e, name) for name in FIELDS}, default=repr) + "\n"
        for e in history.events
    )


def edn(history: CaseHistory) -> str:
    from phalanx.history.edn import dumps

    return dumps(
        Event(
            process=e.process,
            type=e.type,  # type: ignore[arg-type]  # one of EVENT_TYPES: the wire checked it
            f=e.f,
            value=hashable(e.value),
            key=hashable(e.key),
            time=e.time,
        )
        for e in history.events
    )
