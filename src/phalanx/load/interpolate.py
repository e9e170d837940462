"""Compose's variable interpolation, as the Compose specification writes
it: `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}`
(unset), `${VAR:?message}` / `${VAR?message}` (an error), `${VAR:+other}` /
`${VAR+other}` (a replacement when set) and `$$` for a dollar sign. Pure:
the variables are given."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PATTERN = re.compile(
    r"\$(?:(?P<dollar>\$)"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bad>))"
)


class InterpolationError(ValueError):
    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path  # where in the file's data: the key path of the value


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group("dollar"):
            return "$"
        if match.group("plain"):
            return variables.get(match.group("plain"), "")
        name = match.group("name")
        if name is None:
            raise InterpolationError(f"{text!r}: a lone `$` (write `$$` for a dollar sign)")
        value = variables.get(name)
        op, arg = match.group("op"), match.group("arg") or ""
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op is None:
            return value or ""
        if op.endswith("-"):
            return arg if empty else value or ""
        if op.endswith("+"):
            return "" if empty else arg
        if empty:  # `?`
            raise InterpolationError(arg or f"{name} is not set")
        return value or ""

    return _PATTERN.sub(one, text)


def interpolate_all(
    data: Any, variables: Mapping[str, str], path: tuple[str | int, ...] = ()
) -> Any:
    """Every string in `data` (mappings' values, lists' items) interpolated;
    an error carries the path of its value."""
    if isinstance(data, str):
        try:
            return interpolate(data, variables)
        except InterpolationError as exc:
            raise InterpolationError(str(exc), path) from None
    if isinstance(data, dict):
        return {k: interpolate_all(v, variables, (*path, str(k))) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate_all(v, variables, (*path, i)) for i, v in enumerate(data)]
    return data
