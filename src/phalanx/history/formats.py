"""Reading histories from files: phalanx's JSON lines, Jepsen's
`history.edn`, and the operation lines of a Jepsen `jepsen.log`.

Pure: text in, events out (the command reads the file). Every reader yields Events in the file's order; an unreadable entry raises
HistoryError naming the file, the line (or the EDN operation's position)
and the key at fault. Values are data only: JSON and EDN are parsed, never
evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Iterator, Mapping
from pathlib import PurePath
from typing import Any, cast

from phalanx.history.ops import EVENT_TYPES, Event, EventType, HistoryError, hashable

JEPSEN_LOG_LINE = re.compile(
    r"jepsen\.util - (?P<process>\S+)\t(?P<type>:\w+)\t(?P<f>:[\w-]+)(?:\t(?P<value>.*))?$"
)
"""A client's operation as Jepsen logs it: `… jepsen.util - 3\t:invoke\t:write\t4`."""

FORMATS = ("jsonl", "edn", "jepsen-log")


def parse(text: str, name: str, fmt: str | None = None) -> list[Event]:
    """The events of a history file's text (`name` is its path, for
    messages and for guessing the format when not told)."""
    fmt = fmt or guess(name, text)
    if fmt == "jsonl":
        return list(from_json_lines(text, name))
    if fmt == "edn":
        return list(from_edn(text, name))
    if fmt == "jepsen-log":
        return list(from_jepsen_log(text, name))
    raise HistoryError(f"{name}: unknown history format {fmt!r} (one of {', '.join(FORMATS)})")


def guess(name: str, text: str) -> str:
    suffix = PurePath(name).suffix
    if suffix == ".edn":
        return "edn"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if "jepsen.util - " in text:
        return "jepsen-log"
    start = text.lstrip()[:2]
    if start.startswith("[") or start == "{:":
        return "edn"
    if start.startswith("{"):
        return "jsonl"
    raise HistoryError(
        f"{name}: not a history phalanx reads (JSON lines, Jepsen's history.edn or jepsen.log)"
    )


def from_json_lines(text: str, name: str) -> Iterator[Event]:
    """phalanx's records: one JSON object a line with `process`, `type`,
    `f`, `value` and optionally `key` and `time` (seconds); without `time`
    the line's order is the time order."""
    import orjson

    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise HistoryError(f"{where}: not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise HistoryError(f"{where}: an operation is a JSON object, not {line.strip()!r}")
        if not _nemesis(record):
            yield _event(record, where, float(number))


def from_records(records: Iterable[Mapping[str, Any]], name: str) -> Iterator[Event]:
    """phalanx's records already read (a case's history in its results):
    as a JSON lines file's, `name`:N naming the Nth."""
    for number, record in enumerate(records, 1):
        if not _nemesis(record):
            yield _event(dict(record), f"{name}:{number}", float(number))


def _nemesis(record: Mapping[str, Any]) -> bool:
    """A nemesis's event: not a client's operation, left out of the check."""
    return record.get("type") == "nemesis" or record.get("process") == "nemesis"


def from_edn(text: str, name: str) -> Iterator[Event]:
    """Jepsen's history.edn: a vector of operation maps (or the maps one
    after another); the nemesis's operations are not a client's and are
    left out."""
    import edn_format

    try:
        forms = edn_format.loads_all(text)
    except Exception as exc:  # edn_format raises its own and ply's errors
        raise HistoryError(f"{name}: not EDN: {exc}") from None
    if len(forms) == 1 and not isinstance(forms[0], Mapping):
        forms = list(forms[0])
    for position, form in enumerate(forms, 1):
        where = f"{name}: operation {position}"
        record = _plain(form)
        if not isinstance(record, dict):
            raise HistoryError(f"{where}: an operation is a map, not {form!r}")
        if record.get("process") == "nemesis":
            continue
        yield _event(record, where, float(position), times_in_ns=True)


def from_jepsen_log(text: str, name: str) -> Iterator[Event]:
    """The client operations jepsen.util logs, in the order logged; other
    lines (and the nemesis's operations) are skipped."""
    import edn_format

    for number, line in enumerate(text.splitlines(), 1):
        found = JEPSEN_LOG_LINE.search(line)
        if not found:
            continue
        where = f"{name}:{number}"
        process = found["process"]
        if process == ":nemesis":
            continue
        raw = found["value"]
        try:
            value = _plain(edn_format.loads(raw)) if raw and raw.strip() else None
        except Exception as exc:  # as in from_edn
            raise HistoryError(f"{where}: value {raw!r} is not EDN: {exc}") from None
        record = {
            "process": process,
            "type": found["type"][1:],
            "f": found["f"][1:],
            "value": value,
        }
        yield _event(record, where, float(number))


def _event(record: dict[str, Any], where: str, order: float, times_in_ns: bool = False) -> Event:
    for required in ("process", "type", "f"):
        if required not in record:
            raise HistoryError(f"{where}: key {required!r} is missing")
    type_ = record["type"]
    if type_ not in EVENT_TYPES:
        raise HistoryError(f"{where}: key 'type' is {type_!r}, not one of {', '.join(EVENT_TYPES)}")
    f = record["f"]
    if not isinstance(f, str):
        raise HistoryError(f"{where}: key 'f' is {f!r}, not an operation's name")
    time = record.get("time")
    if time is None:
        time = order
    elif isinstance(time, int | float) and not isinstance(time, bool):
        time = time / 1e9 if times_in_ns else float(time)
    else:
        raise HistoryError(f"{where}: key 'time' is {time!r}, not a number")
    try:
        value = hashable(record.get("value"))
        key = hashable(record.get("key"))
    except TypeError as exc:
        raise HistoryError(f"{where}: key 'value': {exc}") from None
    return Event(
        process=str(record["process"]),
        type=cast(EventType, type_),
        f=f,
        value=value,
        key=key,
        time=float(time),
        origin=where,
    )


def _plain(form: Any) -> Any:
    """EDN data as plain Python: keywords as their names, maps as dicts,
    vectors and lists as tuples."""
    import edn_format

    if isinstance(form, edn_format.Keyword):
        return form.name
    if isinstance(form, Mapping):
        return {_plain(k): _plain(v) for k, v in form.items()}
    if isinstance(form, frozenset | set):
        return frozenset(_plain(v) for v in form)
    if isinstance(form, list | tuple) or type(form).__name__ == "ImmutableList":
        return tuple(_plain(v) for v in form)
    if isinstance(form, Hashable):
        return form
    raise HistoryError(f"unsupported EDN value {form!r}")
