"""States and parameters as JSON: what survives the trip, and what is refused."""

from __future__ import annotations

import enum
import json

import pytest

from phalanx.combinatorial.state import StateError, dumps, encode, fresh, loads
from tests.combinatorial.actions import Counter


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Bag(dict[str, object]):  # a dict subclass without to_json, as in py-combtest's examples
    @property
    def a(self) -> object:
        return self.get("a")


def round_trip(value: object) -> object:
    text = dumps(value)
    json.loads(text)  # plain JSON text, whatever went in
    return loads(text)


def test_lossless_round_trip_of_python_values() -> None:
    value = {
        "t": (1, (2, 3)),
        "ints": {1: "one", (2, 3): "pair"},
        "set": {3, 1, 2},
        "colour": Colour.BLUE,
        "nested": [{"__phalanx__": "user data that looks like a tag"}],
        "counter": Counter([1, 2]),
    }
    back = round_trip(value)
    assert isinstance(back, dict)
    assert back["t"] == (1, (2, 3))
    assert back["ints"] == {1: "one", (2, 3): "pair"}
    assert back["set"] == {1, 2, 3}
    assert back["colour"] is Colour.BLUE
    assert back["nested"] == [{"__phalanx__": "user data that looks like a tag"}]
    assert isinstance(back["counter"], Counter) and back["counter"].values == [1, 2]


def test_dict_subclass_keeps_its_class() -> None:
    back = round_trip(Bag(a=1))
    assert type(back) is Bag
    assert back.a == 1


def test_error_names_type_and_path() -> None:
    class Opaque:
        pass

    with pytest.raises(StateError) as info:
        encode({"hosts": [{"name": "a"}, {"name": "b", "conn": Opaque()}]})
    message = str(info.value)
    assert "state['hosts'][1]['conn']" in message
    assert "Opaque" in message


def test_reference_cycle_is_an_error_not_a_crash() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(StateError, match="cycle"):
        encode(loop)


def test_fresh_states_are_independent_and_copied() -> None:
    text = dumps({"inner": []})
    one, two = fresh(text), fresh(text)
    one["inner"].append(1)
    assert two == {"inner": []}
    assert fresh(dumps(Counter([1]))).copied  # Counter.__copy__ ran
