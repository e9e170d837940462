"""The case kinds by name: the built-in ones, and any a plugin registers.

A new kind plugs in by calling `register`: it checks its own options when a
suite is loaded (`CaseKind.prepare`) and makes its own tasks; the loader and
the engines look kinds up here and never name one.
"""

from __future__ import annotations

from phalanx.kinds.base import CaseKind
from phalanx.kinds.executable import DECLARATIVE, EXECUTABLE
from phalanx.kinds.python import PYTHON
from phalanx.kinds.scripts import SCRIPTS
from phalanx.kinds.vm import VM
from phalanx.kinds.walks import WALKS

_REGISTRY: dict[str, CaseKind] = {}


def register(kind: CaseKind) -> CaseKind:
    _REGISTRY[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Forget a kind (a plugin's, or a test's)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> CaseKind:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown case kind {name!r} (known: {known})") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


for _kind in (SCRIPTS, PYTHON, WALKS, EXECUTABLE, DECLARATIVE, VM):
    register(_kind)
