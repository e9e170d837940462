"""Dependency checks for tree tests: is the thing a test needs there?

`app: NAME` is on PATH, `python: MODULE` is importable, `custom: NAME` is
answered by a registered function. Checks run where the test runs (the
agent), and in the coordinator for `--list`. They never import the module
they look for: finding it is enough, and importing a user's package into the
runner could run anything.

New dependency kinds plug in through the `phalanx.dependencies` entry point
group (name: the kind, object: a function NAME -> bool); new custom checks
through `phalanx.custom_dependencies` (name: the custom name, object: a
function () -> bool), or `register_custom` from code.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
import socket
import sys
from collections.abc import Callable, Iterable, Sequence

KindCheck = Callable[[str], bool]
CustomCheck = Callable[[], bool]

KIND_GROUP = "phalanx.dependencies"
CUSTOM_GROUP = "phalanx.custom_dependencies"


def app(name: str) -> bool:
    return shutil.which(name) is not None


def python(name: str) -> bool:
    """Whether `name` (dotted or not) can be imported, found without running
    any of its code: each package's folders are searched for the next part."""
    parts = name.split(".")
    if parts[0] in sys.builtin_module_names:
        return len(parts) == 1
    try:
        # A top-level name is looked up without importing anything, through
        # every finder (editable installs bring their own).
        top = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return False
    if top is None:
        return False
    path: Sequence[str] | None = top.submodule_search_locations
    for part in parts[1:]:
        if path is None:
            return False  # a plain module has no submodules
        spec = importlib.machinery.PathFinder.find_spec(part, path)
        if spec is None:
            return False
        path = spec.submodule_search_locations
    return True


def _ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


_CUSTOM: dict[str, CustomCheck] = {"ipv6": _ipv6}
_KINDS: dict[str, KindCheck] = {"app": app, "python": python}
_loaded = False


def register_custom(name: str, check: CustomCheck) -> None:
    _CUSTOM[name] = check


def register_kind(kind: str, check: KindCheck) -> None:
    _KINDS[kind] = check


def _load_entry_points() -> None:
    """Plug-ins, read once and only when a test needs one: scanning installed
    distributions costs tens of milliseconds."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=KIND_GROUP):
        _KINDS.setdefault(ep.name, _lazy(ep.load))
    for ep in entry_points(group=CUSTOM_GROUP):
        _CUSTOM.setdefault(ep.name, _lazy(ep.load))


def _lazy(load: Callable[[], object]) -> Callable[..., bool]:
    def check(*args: str) -> bool:
        function = load()
        if not callable(function):
            raise TypeError(f"{function!r} is not a function")
        return bool(function(*args))

    return check


def custom(name: str) -> bool:
    if name not in _CUSTOM:
        _load_entry_points()
    check = _CUSTOM.get(name)
    if check is None:
        raise LookupError(f"no check is registered for custom dependency {name!r}")
    return check()


_KINDS["custom"] = custom


def describe(kind: str, name: str) -> str:
    return f"{kind} {name}"


def unmet(dependencies: Iterable[Sequence[str]]) -> list[str]:
    """The dependencies that are not met, each as `kind name` (with why, when
    the check itself could not answer)."""
    missing: list[str] = []
    for kind, name in dependencies:
        if kind not in _KINDS:
            _load_entry_points()
        check = _KINDS.get(kind)
        if check is None:
            missing.append(f"{kind} {name} (no check for {kind!r} dependencies)")
            continue
        try:
            ok = check(name)
        except Exception as exc:  # a plug-in's bug says "cannot tell", not "crash the run"
            missing.append(f"{kind} {name} ({exc})")
            continue
        if not ok:
            missing.append(describe(kind, name))
    return missing
