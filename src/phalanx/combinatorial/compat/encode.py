"""``combtest.encode``: JSON where objects with ``to_json`` travel under a magic key.

An object ``o`` with ``to_json`` is written as ``{MAGIC + "module.Class": o.to_json()}``
and read back with ``Class.from_json``; a one-key object whose key does not
resolve to such a class stays a plain dict. Decoded actions are shared: decoding
the same action twice gives the same instance (an action is its class and its
parameter, and a run decodes each many times). This is the format of
py-combtest's traces, so those can be read too.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from phalanx.combinatorial.action import Action
from phalanx.combinatorial.compat.utils import get_class_from_qualname, get_class_qualname
from phalanx.combinatorial.walk import Walk

_DEFAULT_MAGIC = "CombtestEncoded."
MAGIC = _DEFAULT_MAGIC

# (action class, parameter as JSON) -> the one decoded instance.
_actions: dict[tuple[type, str], Action] = {}
_actions_lock = threading.Lock()


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, Walk):
            return {MAGIC + get_class_qualname(type(o)): list(o)}
        if hasattr(o, "to_json") and not isinstance(o, type):
            return {MAGIC + get_class_qualname(type(o)): o.to_json()}
        raise TypeError(
            f"cannot encode a {type(o).__module__}.{type(o).__qualname__} as JSON: "
            "give it to_json() (and a from_json() classmethod to read it back)"
        )


def encode(obj: Any) -> str:
    """``obj`` as a JSON string; TypeError for what has neither JSON form nor to_json."""
    return json.dumps(obj, cls=_Encoder)


def _cached_action(cls: type[Action], value: Any) -> Action:
    key = (cls, encode(value))
    with _actions_lock:
        found = _actions.get(key)
        if found is None:
            found = _actions[key] = cls.from_json(value)
        return found


def _object(pairs: list[tuple[str, Any]]) -> Any:
    if len(pairs) != 1 or not pairs[0][0].startswith(MAGIC):
        return dict(pairs)
    key, value = pairs[0]
    try:
        cls = get_class_from_qualname(key[len(MAGIC) :])
    except ValueError:
        return {key: value}
    if issubclass(cls, Walk):
        return cls(value)
    if issubclass(cls, Action):
        return _cached_action(cls, value)
    from_json = getattr(cls, "from_json", None)
    if not callable(from_json):
        return {key: value}
    return from_json(value)


def decode(json_str: str) -> Any:
    """The inverse of :func:`encode`; equal actions decode to one shared instance."""
    return json.loads(json_str, object_pairs_hook=_object)
