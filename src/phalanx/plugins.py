"""How phalanx finds what it runs by name: case kinds, task types, the
host's runners and providers, its own and those of separately installed
packages, all the same way: a `Catalog` of the names of one kind of thing,
and a `Registry` that loads what a name stands for.

A catalog looks a name up, in this order, among the things registered in
this process (`register`: tests, embedding code), phalanx's own (a table of
`module:attribute` strings), and the Python entry points other installed
distributions declare in its group (`phalanx.kinds`, `phalanx.tasks`,
`phalanx.runners`, `phalanx.providers`). Nothing is imported before it is
asked for, so a run pays only for the kinds and the provider it uses.

phalanx's own are a table here rather than entry points in its own
pyproject.toml: a checkout on PYTHONPATH or an editable install whose
metadata predates a new entry still finds them, and finding one reads no
installed metadata at all (the scan of every installed distribution is
paid only for a name phalanx does not have). A plug-in cannot replace one
of phalanx's own: the same name always means the same thing.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

T = TypeVar("T")

BUILTIN = "phalanx"  # the origin of phalanx's own
REGISTERED = "registered"  # of what `Registry.register` added


class UnknownPlugin(LookupError):
    """No such name in a registry; the message lists what is installed."""


class PluginError(Exception):
    """A plug-in is installed but cannot be used: its module fails to
    import, or what it names is not what the group expects. The message
    names the distribution it comes from and why."""


@dataclass(frozen=True)
class Entry:
    """One name a registry knows, without loading it."""

    name: str
    target: str  # `module:attribute`
    origin: str  # BUILTIN, REGISTERED, or the distribution: `name version`


class Catalog:
    """The names of one entry-point `group`, and where each comes from,
    without importing any: what a loader checks a definition against. `what`
    is how a message calls one ("case kind"); `builtins` maps phalanx's own
    names to `module:attribute`."""

    def __init__(self, group: str, what: str, builtins: Mapping[str, str]) -> None:
        self.group = group
        self.what = what
        self.builtins = dict(builtins)
        self.registered: dict[str, object] = {}

    def entry(self, name: str) -> Entry:
        """Where `name` comes from. Raises UnknownPlugin, or PluginError
        when two distributions declare it."""
        if name in self.registered:
            return Entry(name, "", REGISTERED)
        if name in self.builtins:
            return Entry(name, self.builtins[name], BUILTIN)
        offers = [e for e in _installed(self.group) if e.name == name]
        if not offers:
            raise UnknownPlugin(
                f"unknown {self.what} {name!r} (installed: {', '.join(self.names())})"
            )
        if len({e.origin for e in offers}) > 1:
            origins = " and ".join(sorted({e.origin for e in offers}))
            raise PluginError(
                f"the {self.what} {name!r} is declared by more than one distribution "
                f"({origins}); uninstall one"
            )
        return offers[0]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self.registered or name in self.builtins:
            return True
        return any(e.name == name for e in _installed(self.group))

    def names(self) -> list[str]:
        """Every name this group answers to, sorted."""
        return sorted({e.name for e in self.entries()})

    def entries(self) -> Iterator[Entry]:
        """What is installed: the registered, phalanx's own, and the plug-ins'
        (a plug-in's name that phalanx has itself is left out: it is never used)."""
        for name in self.registered:
            yield Entry(name, "", REGISTERED)
        for name, target in self.builtins.items():
            if name not in self.registered:
                yield Entry(name, target, BUILTIN)
        for entry in _installed(self.group):
            if entry.name not in self.registered and entry.name not in self.builtins:
                yield entry

    def shadowed(self) -> list[Entry]:
        """Plug-ins' entries that name one of phalanx's own: never loaded."""
        return [e for e in _installed(self.group) if e.name in self.builtins]


class Registry(Generic[T]):
    """The things a `Catalog` names, loaded on first use. `accept` checks a
    loaded object and returns it as a T, or raises TypeError saying what is
    wrong with it."""

    def __init__(self, catalog: Catalog, accept: Callable[[str, object], T]) -> None:
        self.catalog = catalog
        self._accept = accept
        self._loaded: dict[str, T] = {}

    def get(self, name: str) -> T:
        """The thing called `name`, imported on first use. Raises
        UnknownPlugin, or PluginError for a plug-in that cannot load."""
        registered = self.catalog.registered.get(name)
        if registered is not None:
            return self._accepted(Entry(name, "", REGISTERED), registered)
        found = self._loaded.get(name)  # an engine asks once per host and stage
        if found is None:
            found = self._loaded[name] = self._load(self.catalog.entry(name))
        return found

    def __contains__(self, name: object) -> bool:
        return name in self.catalog

    def names(self) -> list[str]:
        return self.catalog.names()

    def preload(self) -> None:
        """Import phalanx's own now (a fork server, before it forks)."""
        for name in self.catalog.builtins:
            self.get(name)

    def register(self, name: str, thing: T) -> T:
        """`thing` under `name` in this process, before anything installed."""
        self.catalog.registered[name] = thing
        return thing

    def unregister(self, name: str) -> None:
        self.catalog.registered.pop(name, None)

    def _load(self, entry: Entry) -> T:
        module, _, attribute = entry.target.partition(":")
        try:
            thing: object = importlib.import_module(module)
            for part in attribute.split(".") if attribute else ():
                thing = getattr(thing, part)
        except (Exception, SystemExit) as exc:  # a plug-in's import can fail in any way
            raise PluginError(
                f"{self._where(entry)} cannot be loaded: {type(exc).__name__}: {exc}"
            ) from exc
        return self._accepted(entry, thing)

    def _accepted(self, entry: Entry, thing: object) -> T:
        try:
            return self._accept(entry.name, thing)
        except TypeError as exc:
            raise PluginError(f"{self._where(entry)} is not a {self.catalog.what}: {exc}") from exc

    def _where(self, entry: Entry) -> str:
        source = {BUILTIN: "phalanx itself", REGISTERED: "registered in this process"}.get(
            entry.origin, f"distribution {entry.origin}"
        )
        target = f"{entry.target}, " if entry.target else ""
        return f"the {self.catalog.what} {entry.name!r} ({target}from {source})"


@functools.cache
def _installed(group: str) -> tuple[Entry, ...]:
    """The entry points installed distributions declare in `group`; read
    once per process (a scan of every distribution's metadata)."""
    from importlib.metadata import entry_points

    return tuple(_entry(ep) for ep in entry_points(group=group))


def _entry(ep: EntryPoint) -> Entry:
    dist = ep.dist
    origin = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    return Entry(ep.name, f"{ep.module}:{ep.attr}" if ep.attr else ep.module, origin)


def rescan() -> None:
    """Forget what was read of the installed distributions (after an
    install in this process)."""
    _installed.cache_clear()
