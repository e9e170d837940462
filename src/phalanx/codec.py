"""One codec for a run's records: a frozen record (a host's part of a
stage, a stage, a case, a run, a VM's record) as JSON types, and back.

Encoding walks a record's fields, whatever they are, so a field added to a
record is carried by every writer (results.json, the store, the API, the
web) without a line changed in any of them; nothing copies a record field
by field. Decoding checks what it reads, against the record's own type
hints, with pydantic: only readers pay for importing it (a run that writes
results.json never does).
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")


def iso(moment: datetime | None) -> str | None:
    """`2024-05-01T12:00:00.000000+00:00`. A naive time is taken as UTC: the
    engine stamps in UTC, and a report must never guess the local zone."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat(timespec="microseconds")


def encode(value: Any) -> Any:
    """`value` as JSON types: a record as an object of its fields (in their
    order), enums as their values, times as ISO 8601 (`iso`), tuples as
    lists. What a test put in a record's `data` is whatever it produced:
    it never breaks the encoding (what JSON cannot hold is its repr)."""
    return _encode(value, times=True)


def encode_fields(record: Any, *, leaving_out: tuple[str, ...]) -> dict[str, Any]:
    """`encode(record)` without some of its fields (those a writer encodes
    its own way: a stage's hosts with their output tails)."""
    return _record(record, times=True, leaving_out=leaving_out)


def columns(record: Any) -> dict[str, Any]:
    """A record's fields as a store's columns: as `encode` gives them, but
    times kept as `datetime` (the columns are typed)."""
    return _record(record, times=False)


def field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in _fields(cls))


def decode(cls: type[T], data: Any) -> T:
    """A `cls` from what `encode` or `columns` gave (a stored row, a
    results.json read back, a document from anywhere): checked, with lists
    back into tuples and strings back into statuses and times."""
    adapter: Any = _adapter(cls)
    return adapter.validate_python(data)  # type: ignore[no-any-return]


_adapters: dict[type, object] = {}
_field_lists: dict[type, tuple[dataclasses.Field[Any], ...]] = {}


def _adapter(cls: type) -> object:
    if (adapter := _adapters.get(cls)) is None:
        from pydantic import TypeAdapter  # only readers pay for pydantic

        adapter = _adapters[cls] = TypeAdapter(cls)
    return adapter


def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    if (found := _field_lists.get(cls)) is None:
        found = _field_lists[cls] = dataclasses.fields(cls)
    return found


def _record(record: Any, *, times: bool, leaving_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """A record as an object of its fields, in their order: the one walk
    over a record's fields that every writer goes through."""
    return {
        f.name: _encode(getattr(record, f.name), times=times)
        for f in _fields(type(record))
        if f.name not in leaving_out
    }


# The types most fields hold, looked up by exact type before the checks
# below: a run's records are thousands of fields by the time results.json
# is written.
_AS_IS = frozenset({str, bool, float, type(None)})


def _encode(value: Any, *, times: bool) -> Any:
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is datetime:
        return iso(value) if times else value
    if kind in _field_lists:  # a record type seen before
        return _record(value, times=times)
    if value is None or isinstance(value, str | bool | float):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)  # orjson's range
    if isinstance(value, datetime):
        return iso(value) if times else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _record(value, times=times)
    if isinstance(value, dict):
        return {str(k): _encode(v, times=times) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v, times=times) for v in value]
    return repr(value)
