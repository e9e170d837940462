"""The EDN export reads back as the same history, in phalanx and as Jepsen
writes it (keywords, vectors, nil, nanoseconds)."""

from __future__ import annotations

from phalanx.history import edn, register
from phalanx.history.formats import parse
from phalanx.history.ops import Event, pair


def test_a_history_exported_to_edn_reads_back_the_same() -> None:
    events = [
        Event("h1/c0", "invoke", "cas", (1, 2), "x", 1.5),
        Event("h2/c1", "invoke", "read", None, "x", 1.75),
        Event("h1/c0", "ok", "cas", (1, 2), "x", 2.0),
        Event("h2/c1", "info", "read", None, "x", 3.0),
    ]
    text = edn.dumps(events)
    assert text.splitlines()[0] == (
        '[{:process "h1/c0" :type :invoke :f :cas :value [1 2] :time 1500000000 :key "x"}'
    )
    back = parse(text, "history.edn")
    assert [(e.process, e.type, e.f, e.value, e.key, e.time) for e in back] == [
        (e.process, e.type, e.f, e.value, e.key, e.time) for e in events
    ]
    assert not register.check(pair(back)).valid  # cas 1→2 from nil cannot happen
