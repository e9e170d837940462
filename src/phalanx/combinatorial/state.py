"""Walk state as JSON: the only form in which states and parameters travel.

A value is encoded as plain JSON where that loses nothing. Everything else is
tagged with a ``"__phalanx__"`` key: objects that have ``to_json`` (rebuilt
with ``from_json`` where the class has one), enums, tuples, sets, dicts with
non-string keys, and dict or list subclasses. Anything else is an error that
names the value's type and where it sits.
"""

from __future__ import annotations

import copy
import enum
import json
from typing import Any

from phalanx.combinatorial.names import ClassPathError, class_path, resolve_class

TAG = "__phalanx__"

_SCALARS = (str, int, float, bool, type(None))


class StateError(TypeError):
    """A state or parameter cannot be represented as JSON."""


def encode(value: Any, path: str = "state") -> Any:
    """``value`` as a JSON-able structure; raises StateError naming type and path."""
    try:
        return _encode(value, path)
    except RecursionError:
        raise StateError(f"{path}: nested too deeply (a reference cycle?)") from None


def _encode(value: Any, path: str) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        return [_encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind is dict:
        if TAG not in value and all(type(k) is str for k in value):
            return {k: _encode(v, f"{path}[{k!r}]") for k, v in value.items()}
        return {TAG: "dict", "items": _items(value, path)}
    if hasattr(value, "to_json") and not isinstance(value, type):
        inner = _encode(value.to_json(), f"{path}.to_json()")
        return {TAG: "obj", "cls": _path_of(kind, path), "v": inner}
    if isinstance(value, enum.Enum):
        return {TAG: "enum", "cls": _path_of(kind, path), "name": value.name}
    if kind is tuple:
        return {TAG: "tuple", "v": [_encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if kind is set or kind is frozenset:
        # Sorted by encoding: set order differs between processes, and encodings are compared.
        items = [_encode(v, f"{path}{{{v!r}}}") for v in value]
        return {TAG: kind.__name__, "v": sorted(items, key=_sort_key)}
    if isinstance(value, dict):
        return {TAG: "dict", "cls": _path_of(kind, path), "items": _items(value, path)}
    if isinstance(value, list):
        return {
            TAG: "list",
            "cls": _path_of(kind, path),
            "v": [_encode(v, f"{path}[{i}]") for i, v in enumerate(value)],
        }
    raise StateError(
        f"{path}: a value of type {kind.__module__}.{kind.__qualname__} is not JSON-serialisable; "
        "use JSON types, or give the class to_json() and a from_json() classmethod"
    )


def _sort_key(encoded: Any) -> str:
    return json.dumps(encoded, sort_keys=True)


def _items(value: dict[Any, Any], path: str) -> list[list[Any]]:
    return [
        [_encode(k, f"{path}<key {k!r}>"), _encode(v, f"{path}[{k!r}]")] for k, v in value.items()
    ]


def _path_of(cls: type, path: str) -> str:
    try:
        return class_path(cls)
    except TypeError as exc:
        raise StateError(f"{path}: {exc}") from None


def decode(obj: Any) -> Any:
    """The inverse of :func:`encode`."""
    kind = type(obj)
    if kind is dict:
        tag = obj.get(TAG)
        if tag is None:
            return {k: decode(v) for k, v in obj.items()}
        return _decode_tagged(tag, obj)
    if kind is list:
        return [decode(v) for v in obj]
    return obj


def _decode_tagged(tag: str, obj: dict[str, Any]) -> Any:
    if tag == "obj":
        inner = decode(obj["v"])
        cls = _resolve(obj["cls"])
        from_json = getattr(cls, "from_json", None)
        return from_json(inner) if callable(from_json) else inner
    if tag == "enum":
        return _resolve(obj["cls"])[obj["name"]]
    if tag == "tuple":
        return tuple(decode(v) for v in obj["v"])
    if tag == "set":
        return {decode(v) for v in obj["v"]}
    if tag == "frozenset":
        return frozenset(decode(v) for v in obj["v"])
    if tag == "dict":
        items = {decode(k): decode(v) for k, v in obj["items"]}
        if "cls" not in obj:
            return items
        cls = _resolve(obj["cls"])
        # __new__ rather than cls(items): a subclass's __init__ may take other arguments.
        out = cls.__new__(cls)
        dict.update(out, items)
        return out
    if tag == "list":
        cls = _resolve(obj["cls"])
        out = cls.__new__(cls)
        list.extend(out, [decode(v) for v in obj["v"]])
        return out
    raise StateError(f"unknown {TAG} tag {tag!r}")


def _resolve(path: str) -> Any:
    try:
        return resolve_class(path)
    except ClassPathError as exc:
        raise StateError(str(exc)) from exc


def dumps(value: Any, path: str = "state") -> str:
    return json.dumps(encode(value, path), separators=(",", ":"))


def loads(text: str) -> Any:
    raw = json.loads(text)
    # Untagged JSON is already the value; skip the walk over it.
    return raw if TAG not in text else decode(raw)


def fresh(text: str) -> Any:
    """A walk's own starting state: rebuilt from JSON, then ``copy.copy`` (honours ``__copy__``)."""
    if text == "null":
        return None
    return copy.copy(loads(text))
