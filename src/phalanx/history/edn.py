"""A history as Jepsen's `history.edn`, for Jepsen's own tools (Knossos,
Elle, the timeline): a vector of `{:process :type :f :value}` maps, with
`:time` in nanoseconds and `:key` when the operation has one."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from phalanx.history.ops import Event


def dumps(events: Iterable[Event]) -> str:
    import edn_format

    def form(value: Hashable) -> object:
        # EDN vectors, not lists: Jepsen writes a cas's [old new] that way.
        if isinstance(value, tuple):
            return [form(v) for v in value]
        if isinstance(value, frozenset):
            return frozenset(form(v) for v in value)
        return value

    k = edn_format.Keyword
    maps = []
    for event in events:
        record: dict[object, object] = {
            k("process"): event.process,
            k("type"): k(event.type),
            k("f"): k(event.f),
            k("value"): form(event.value),
            k("time"): round(event.time * 1e9),
        }
        if event.key is not None:
            record[k("key")] = form(event.key)
        maps.append(record)
    text: str = edn_format.dumps(maps)
    return text.replace("} {", "}\n {") + "\n"
