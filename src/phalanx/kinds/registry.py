"""The case kinds by name (a case's `kind:`): phalanx's own and those of
installed plug-ins (entry-point group `phalanx.kinds`, each naming a
`CaseKind` object). The loader and the engines look kinds up here and
never name one; a kind checks its own options (`CaseKind.prepare`) and
makes its own tasks.
"""

from __future__ import annotations

from typing import cast

from phalanx.kinds.base import CaseKind
from phalanx.plugins import Catalog, Registry

# What a case kind must have; a Protocol cannot be checked with isinstance.
_MEMBERS = ("options", "prepare", "stages", "task", "judge")


def _accept(name: str, thing: object) -> CaseKind:
    missing = [m for m in _MEMBERS if not hasattr(thing, m)]
    if missing:
        raise TypeError(f"it has no {', '.join(missing)} (see phalanx.kinds.base.CaseKind)")
    called = getattr(thing, "name", None)
    if called != name:
        raise TypeError(f"its name is {called!r}, not {name!r}")
    return cast(CaseKind, thing)


KINDS: Registry[CaseKind] = Registry(
    Catalog(
        "phalanx.kinds",
        "case kind",
        {
            "scripts": "phalanx.kinds.scripts:SCRIPTS",
            "python": "phalanx.kinds.python:PYTHON",
            "walks": "phalanx.kinds.walks:WALKS",
            "executable": "phalanx.kinds.executable:EXECUTABLE",
            "declarative": "phalanx.kinds.executable:DECLARATIVE",
            "vm": "phalanx.kinds.vm:VM",
        },
    ),
    _accept,
)


def register(kind: CaseKind) -> CaseKind:
    """`kind` in this process (a test's, an embedding program's)."""
    return KINDS.register(kind.name, kind)


def unregister(name: str) -> None:
    KINDS.unregister(name)


def get(name: str) -> CaseKind:
    """Raises UnknownPlugin, or PluginError for a plug-in that cannot load."""
    return KINDS.get(name)


def names() -> list[str]:
    return KINDS.names()
