"""Checks shared by the loaders: each returns the clean value or raises
`FieldError` with a message that reads well after `key:`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any


class FieldError(ValueError):
    pass


def text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FieldError(f"must be text, not {type(value).__name__}")
    return str(value)


# A name that is a link's path segment (`/suites/NAME/run`) and a folder's
# name (`tc/NAME`, run folders): none of these may split or leave it.
_UNSAFE_IN_SEGMENT = re.compile(r"[/\\?#%\x00-\x1f\x7f]")


def segment(value: Any) -> str:
    """A suite, case or cluster name: text that is safe as one path segment."""
    if not isinstance(value, str) or not value.strip():
        raise FieldError("must be a non-empty name")
    if value in (".", "..") or _UNSAFE_IN_SEGMENT.search(value) or len(value) > 200:
        raise FieldError(
            f"{value!r} is not safe as one path segment: no / \\ ? # %, control "
            "characters, `.` or `..`, and at most 200 characters"
        )
    return value


def names(value: Any) -> tuple[str, ...]:
    """A list of strings; a single string is a list of one."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple):
        raise FieldError(f"must be a list of names, not {type(value).__name__}")
    for item in value:
        if not isinstance(item, str) or not item:
            raise FieldError(f"must be a list of names; {item!r} is not one")
    return tuple(value)


def mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(f"must be a mapping, not {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def string_map(value: Any) -> dict[str, str]:
    """Tag values: scalars only, kept as text."""
    out: dict[str, str] = {}
    for key, item in mapping(value).items():
        if isinstance(item, dict | list) or item is None:
            raise FieldError(f"{key!r} must be a single value")
        out[key] = str(item).lower() if isinstance(item, bool) else str(item)
    return out


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def seconds(value: Any) -> float:
    """A duration: a number of seconds, or text like `90s`, `5m`, `1h`."""
    if isinstance(value, bool):
        raise FieldError("must be a number of seconds")
    if isinstance(value, int | float):
        number = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise FieldError(f"must be seconds (a number, or like 90s, 5m, 1h), not {value!r}")
        number = float(match.group(1)) * _UNIT[match.group(2)]
    if number <= 0:
        raise FieldError("must be more than zero seconds")
    return number


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_SCALE = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size(value: Any) -> int:
    """Bytes, from `20G`, `200M` or a plain number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise FieldError(f"must be a size like 20G, 200M or a number of bytes, not {value!r}")
    return int(float(match.group(1)) * _SCALE[match.group(2).upper()])


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")


def percent(value: Any) -> float:
    """A share from 0 to 100: `1%`, `0.5%` or a plain number."""
    if isinstance(value, bool):
        raise FieldError("must be a percentage like 1% or 0.5%")
    match = _PERCENT.match(str(value))
    number = float(match.group(1)) if match else -1.0
    if not 0 <= number <= 100:
        raise FieldError(f"must be a percentage from 0% to 100%, not {value!r}")
    return number


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(bit|bps)?\s*$", re.IGNORECASE)
_RATE_SCALE = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3}


def bitrate(value: Any) -> int:
    """Bits per second, from `10mbit`, `512kbit`, `1gbit` or a plain number
    of bits (tc's units: `bit`, and `bps` for bytes per second)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _RATE.match(str(value))
    if not match or float(match.group(1)) <= 0:
        raise FieldError(f"must be a rate like 10mbit, 512kbit or 1gbit, not {value!r}")
    bits = float(match.group(1)) * _RATE_SCALE[match.group(2).lower()]
    if (match.group(3) or "").lower() == "bps":
        bits *= 8
    return int(bits)


def unknown_key(key: object, known: Iterable[str], what: str = "key") -> str:
    """The message for a key nobody reads: a likely typo is named first."""
    import difflib

    names = sorted(known)
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {what} ({hint}known: {', '.join(names)})"
