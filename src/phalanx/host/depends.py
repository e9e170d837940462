"""Dependency checks for tree tests: is the thing a test needs there?

`app: NAME` is on PATH, `python: MODULE` is importable, `custom: NAME` is
answered by a registered function. Checks run where the test runs (the
agent), and in the coordinator for `--list`. They never import the module
they look for: finding it is enough, and importing a user's package into the
runner could run anything.

Asterisk's test suite declares more kinds, checked as its runtests.py does
when a `Checker` is given the settings of the run (`--asterisk`, `--python`,
the suite's remote instances): `asterisk: MODULE` (the module's `.so` in the
binary's module folder), `buildoption: NAME` (`#define NAME 1` in its
buildopts.h), `sipp: version=… feature=…`, `openssl: version=…`, `pcap`, and
the custom `fax`, `rawsocket`, `remote` (others, such as `soundcard`, plug in).

New dependency kinds plug in through the `phalanx.dependencies` entry point
group (name: the kind, object: a function NAME -> bool); new custom checks
through `phalanx.custom_dependencies` (name: the custom name, object: a
function () -> bool), or `register_custom` from code.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

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


def _rawsocket() -> bool:
    try:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW):
            return True
    except (OSError, AttributeError):
        return False


_CUSTOM: dict[str, CustomCheck] = {"ipv6": _ipv6, "rawsocket": _rawsocket}
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


# --- Asterisk's kinds, which need to know the run's asterisk and python ------------------

PROBE_TIMEOUT = 10.0  # seconds for `sipp -v`, `openssl version`, an interpreter's answer
FAX_MODULES = ("app_fax", "res_fax_spandsp", "res_fax_digium")
CONTEXT_KINDS = frozenset(
    {"asterisk", "buildoption", "sipp", "openssl", "pcap", "python", "custom"}
)


def _probe(command: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    try:
        done = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout + done.stderr


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


def _words(name: str) -> dict[str, str]:
    """`version=v3.5 feature=PCAP` back to a mapping (see load.testconfig)."""
    return dict(w.split("=", 1) for w in name.split() if "=" in w)


class Checker:
    """Dependency checks with the run's settings, each answer kept: a tree
    of a thousand tests asks about the same few dozen things.

    settings: `asterisk` (path of the binary), `python` (the interpreter the
    tests run with), `root` (the test suite's folder: lib/python, astroot),
    `remote` ("1" when the tests run against a remote Asterisk)."""

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        self.settings = dict(settings or {})
        self._answers: dict[tuple[str, str], str | None] = {}
        self._moddir: str | None = None
        self._moddir_found = False
        self._found: dict[str, bool] = {}  # python name -> found by the tests' interpreter

    _shared: dict[tuple[tuple[str, str], ...], Checker] = {}

    @classmethod
    def shared(cls, settings: Mapping[str, str]) -> Checker:
        """One checker per settings in this process: the tests of a run ask
        the same questions, and a probe of another interpreter costs ~30 ms."""
        key = tuple(sorted(settings.items()))
        if key not in cls._shared:
            cls._shared[key] = cls(settings)
        return cls._shared[key]

    def unmet(self, dependencies: Iterable[Sequence[str]]) -> list[str]:
        return [why for why in (self.why_unmet(k, n) for k, n in dependencies) if why]

    def prefetch(self, dependencies: Iterable[Sequence[str]]) -> None:
        """Answer every `python:` question in one start of the tests'
        interpreter instead of one each."""
        interpreter = self.settings.get("python")
        names = sorted({n for k, n in dependencies if k == "python"} - self._found.keys())
        if not interpreter or not names:
            return
        script = (
            "import importlib.util,sys\n"
            "for n in sys.argv[1:]:\n"
            " try:\n  s=importlib.util.find_spec(n)\n"
            " except Exception:\n  s=None\n"
            " print(n, 'yes' if s else 'no')\n"
        )
        answer = _probe([interpreter, "-c", script, *names], self._python_env())
        for line in answer.splitlines():
            name, _, found = line.rpartition(" ")
            if name in names:
                self._found[name] = found == "yes"

    def unmet_names(self, dependencies: Iterable[Sequence[str]]) -> list[str]:
        """The unmet ones as runtests.py's --list-terse names them: the
        version asked for when there is one, else the name."""
        names = []
        for kind, name in dependencies:
            if self.why_unmet(kind, name):
                plain = "=" not in name and name != "any"
                words = _words(name)
                if kind == "sipp" and words.get("feature"):
                    # runtests.py prints SIPpVersion: `v3.5-PCAP`, or `PCAP` alone
                    version = "-".join(w for w in (words.get("version"), words["feature"]) if w)
                    names.append(version)
                    continue
                names.append(words.get("version") or (name if plain else kind))
        return names

    def why_unmet(self, kind: str, name: str) -> str | None:
        key = (kind, name)
        if key not in self._answers:
            self._answers[key] = self._check(kind, name)
        return self._answers[key]

    def _check(self, kind: str, name: str) -> str | None:
        if kind in CONTEXT_KINDS and (kind != "python" or self.settings.get("python")):
            try:
                ok, why = self._context(kind, name)
            except Exception as exc:  # "cannot tell" is unmet, never a crash
                return f"{kind} {name} ({exc})"
            return None if ok else f"{kind} {name}" + (f" ({why})" if why else "")
        missing = unmet([(kind, name)])
        return missing[0] if missing else None

    def _context(self, kind: str, name: str) -> tuple[bool, str]:
        remote = self.settings.get("remote") == "1"
        if kind == "asterisk":
            if remote:
                return True, ""  # runtests.py assumes a remote Asterisk has it
            return self._module(name)
        if kind == "buildoption":
            if remote:
                return True, ""
            return self._build_option(name)
        if kind == "sipp":
            return _sipp(_words(name))
        if kind == "openssl":
            return self._openssl(_words(name).get("version"))
        if kind == "pcap":
            return self._python("scapy"), "needs scapy in the tests' python"
        if kind == "python":
            return self._python(name), ""
        # custom
        if name == "remote":
            return remote, "the suite's test-config.yaml lists no remote asterisk-instances"
        if name == "fax":
            found = [m for m in FAX_MODULES if self._module(m)[0]]
            return bool(found), "none of " + ", ".join(FAX_MODULES)
        return custom(name), ""

    def _asterisk(self) -> str | None:
        given = self.settings.get("asterisk")
        return given if given else shutil.which("asterisk")

    def module_dir(self) -> str | None:
        """Where the asterisk binary's modules are: `astmoddir` of the
        asterisk.conf beside its prefix (or the system's), else
        PREFIX/lib/asterisk/modules."""
        if self._moddir_found:
            return self._moddir
        self._moddir_found = True
        binary = self._asterisk()
        if binary is None:
            return None
        prefix = Path(os.path.realpath(binary)).parent.parent
        confs = [
            prefix / "etc" / "asterisk" / "asterisk.conf",
            Path("/etc/asterisk/asterisk.conf"),
            Path("/usr/local/etc/asterisk/asterisk.conf"),
        ]
        for _, text in _readable(confs):
            match = re.search(r"^\s*astmoddir\s*=>?\s*(\S+)", text, re.MULTILINE)
            if match:
                self._moddir = match.group(1)
                return self._moddir
        for lib in ("lib", "lib64"):
            folder = prefix / lib / "asterisk" / "modules"
            if folder.is_dir():
                self._moddir = str(folder)
                break
        return self._moddir

    def _module(self, name: str) -> tuple[bool, str]:
        if self._asterisk() is None:
            return False, "no asterisk found; give --asterisk PATH"
        folder = self.module_dir()
        if folder is None:
            return False, "no module folder found for the asterisk binary"
        return os.path.exists(os.path.join(folder, f"{name}.so")), f"not in {folder}"

    def _build_option(self, name: str) -> tuple[bool, str]:
        places = []
        if self.settings.get("root"):
            places.append(Path(self.settings["root"]) / "astroot/usr/include/asterisk/buildopts.h")
        binary = self._asterisk()
        if binary is not None:
            prefix = Path(os.path.realpath(binary)).parent.parent
            places.append(prefix / "include/asterisk/buildopts.h")
        places += [
            Path("/usr/include/asterisk/buildopts.h"),
            Path("/usr/local/include/asterisk/buildopts.h"),
        ]
        for place, text in _readable(places):
            pattern = rf"^\s*#define\s+{re.escape(name)}\s+1\b"
            return bool(re.search(pattern, text, re.MULTILINE)), f"not defined in {place}"
        return False, "no buildopts.h found"

    def _openssl(self, version: str | None) -> tuple[bool, str]:
        """As runtests.py: the OpenSSL that pyOpenSSL reports in the tests'
        interpreter (runtests.py asks its own, which runs the tests), not
        the `openssl` binary. With no version asked for it is always met
        there (the installed version is compared with itself)."""
        if not version:
            return True, ""
        interpreter = self.settings.get("python") or sys.executable
        script = "from OpenSSL.SSL import OPENSSL_VERSION_NUMBER as v; print(v)"
        answer = _probe([interpreter, "-c", script], self._python_env()).strip()
        if not answer.isdigit():
            return False, f"no pyOpenSSL in {interpreter}"
        have = int(answer)
        if have < openssl_number(version):
            return False, f"pyOpenSSL in {interpreter} has OpenSSL {_openssl_text(have)}"
        return True, ""

    def _python_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.settings.get("root"):
            lib = os.path.join(self.settings["root"], "lib", "python")
            env["PYTHONPATH"] = os.pathsep.join(p for p in (lib, env.get("PYTHONPATH")) if p)
        return env

    def _python(self, name: str) -> bool:
        interpreter = self.settings.get("python")
        if not interpreter:
            return python(name)
        if name not in self._found:
            self.prefetch([("python", name)])
        return self._found.get(name, False)


def _sipp(wanted: Mapping[str, str]) -> tuple[bool, str]:
    binary = shutil.which("sipp")
    if binary is None:
        return False, "sipp is not on PATH"
    line = next((ln for ln in _probe([binary, "-v"]).splitlines() if "SIPp " in ln), "")
    head = line.split("SIPp ", 1)[1].split(",", 1)[0] if line else ""
    version, _, features = head.partition("-")
    if wanted.get("version") and _numbers(version) < _numbers(wanted["version"]):
        return False, f"found {version or 'no version'}"
    feature = wanted.get("feature", "").upper()
    if feature and feature not in features.upper():
        return False, f"found {head or 'no version'}"
    return True, ""


def openssl_number(version: str) -> int:
    """`1.0.2k` in OpenSSL's own number layout (0xMNNFFPPS: major, minor,
    fix, patch letter), which pyOpenSSL's OPENSSL_VERSION_NUMBER has."""
    match = re.match(r"\s*(\d+)\.(\d+)\.(\d+)([a-z]?)", version)
    if match is None:
        return 0
    major, minor, fix, letter = match.groups()
    patch = ord(letter) - ord("a") if letter else 0
    return (int(major) << 28) + (int(minor) << 20) + (int(fix) << 12) + (patch << 4)


def _openssl_text(number: int) -> str:
    # OpenSSL 3 moved the patch number to 0xMNN00PP0; runtests.py compares
    # the raw numbers either way, and so does phalanx.
    patch = (number >> 4) & 0xFF if number >> 28 >= 3 else (number >> 12) & 0xFF
    return f"{number >> 28}.{(number >> 20) & 0xFF}.{patch}"


def _readable(paths: Iterable[Path]) -> Iterator[tuple[Path, str]]:
    """Each of `paths` that can be read, with its text, in order."""
    for path in paths:
        try:
            yield path, path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
