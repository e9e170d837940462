"""Classes named by import path, so walks can cross process and machine boundaries.

A name is ``module:qualname``. Workers rebuild action classes and state classes
from these names instead of receiving pickled objects.
"""

from __future__ import annotations

import importlib
from typing import Any


class ClassPathError(LookupError):
    """A ``module:qualname`` does not resolve to a class here."""


def class_path(cls: type) -> str:
    if "<locals>" in cls.__qualname__:
        raise TypeError(
            f"{cls.__qualname__} is defined inside a function; define it at module level "
            "so that workers can import it"
        )
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve_class(path: str) -> type:
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise ClassPathError(f"{path!r} is not a class path (expected 'module:QualName')")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ClassPathError(
            f"cannot import module {module_name!r} for {path!r}: {exc} "
            "(the module must be importable here: install it or put it on PYTHONPATH)"
        ) from exc
    obj: Any = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ClassPathError(f"module {module_name!r} has no {qualname!r}") from None
    if not isinstance(obj, type):
        raise ClassPathError(f"{path!r} names a {type(obj).__name__}, not a class")
    return obj
