"""Checks of a case's kind-specific keys: each returns the value, or raises
OptionError naming the key, with a message that reads well after `key:`."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from phalanx.kinds.base import CaseSpec, OptionError, ReadError


def boolean(options: Mapping[str, Any], key: str) -> bool | None:
    value = options.get(key)
    if value is not None and not isinstance(value, bool):
        raise OptionError(f"must be true or false, not {value!r}", key)
    return value


def integer(options: Mapping[str, Any], key: str, least: int | None = None) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f"must be a whole number, not {value!r}", key)
    if least is not None and value < least:
        raise OptionError(f"must be at least {least}, not {value}", key)
    return value


def number(
    options: Mapping[str, Any], key: str, least: float = 0.0, above: bool = False
) -> float | None:
    """A number >= `least` (> `least` with `above`)."""
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptionError(f"must be a number, not {value!r}", key)
    if value < least or (above and value == least):
        bound = f"greater than {least:g}" if above else f"at least {least:g}"
        raise OptionError(f"must be {bound}, not {value:g}", key)
    return float(value)


def text(options: Mapping[str, Any], key: str, required: bool = False) -> str | None:
    value = options.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise OptionError(f"must be non-empty text, not {value!r}", key)
    return value


def choice(options: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    value = options.get(key)
    if value is not None and value not in allowed:
        raise OptionError(f"must be {' or '.join(allowed)}, not {value!r}", key)
    return value


def mapping(options: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = options.get(key)
    if value is not None and not isinstance(value, dict):
        raise OptionError(f"must be a mapping, not {type(value).__name__}", key)
    return value


def source(spec: CaseSpec, module: str, *path: str | int) -> str:
    """The source of `module`, through the loader's reader."""
    try:
        return spec.read_module(module)
    except ReadError as exc:
        raise OptionError(str(exc), *path) from None


def defined_names(module: str, text: str, *path: str | int) -> set[str]:
    """The top-level names `text` binds to classes or imports (read, not run:
    the loader runs no test code)."""
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise OptionError(f"module {module!r}: {exc}", *path) from None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).partition(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names
