"""Plug-ins as a user installs them: a wheel installed by pip into a folder
on PYTHONPATH, its entry points found by `phalanx run` (a real process),
its kind and provider used for a run; and what phalanx says when a name is
not installed or a plug-in cannot load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx import plugins
from phalanx.host.runners import RUNNERS
from phalanx.kinds.registry import KINDS
from phalanx.plugins import Catalog, PluginError, Registry, UnknownPlugin
from phalanx.providers.registry import PROVIDERS
from phalanx.tasks.registry import TASKS
from tests.plugins.wheels import build_wheel, pip_install

DEMO = Path(__file__).parent / "plugins" / "phalanx_demo.py"
DEMO_ENTRY_POINTS = """\
[phalanx.kinds]
demo-stamp = phalanx_demo:STAMP
[phalanx.tasks]
demo-stamp = phalanx_demo:StampTask
[phalanx.runners]
demo-stamp = phalanx_demo:run_stamp
[phalanx.providers]
demo-twins = phalanx_demo:TwinsProvider
"""
# A plug-in whose module needs a library that is not installed (and that
# would replace phalanx's own `scripts`, which the runs below use).
BROKEN = "import phalanx_missing_dependency  # noqa\n"
BROKEN_ENTRY_POINTS = """\
[phalanx.kinds]
broken-kind = phalanx_broken:KIND
scripts = phalanx_broken:SCRIPTS
[phalanx.providers]
broken-provider = phalanx_broken:make
"""
RUN_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the demo and the broken plug-in are pip-installed into."""
    root = tmp_path_factory.mktemp("plugins")
    demo = build_wheel(
        root / "wheels",
        "phalanx-demo",
        "0.1",
        {"phalanx_demo": DEMO.read_text()},
        DEMO_ENTRY_POINTS,
    )
    broken = build_wheel(
        root / "wheels", "phalanx-broken", "0.2", {"phalanx_broken": BROKEN}, BROKEN_ENTRY_POINTS
    )
    for wheel in (demo, broken):
        pip_install(wheel, root / "site")
    return root / "site"


def phalanx(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "phalanx.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )  # fmt: skip


def repo(root: Path, *, provider: str, cases: str) -> Path:
    """A definitions repo: cluster `c` of two hosts served by `provider`,
    and suite `s` whose `tests:` are `cases` (YAML list items). Returns the
    suite's folder."""
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "c.yaml").write_text(
        f"name: c\nprovider: {provider}\nhosts:\n  - name: h0.phalanx.test\n"
        "  - name: h1.phalanx.test\n"
    )
    suite = root / "test-suites" / "s"
    (suite / "tc" / "echo").mkdir(parents=True)
    (suite / "tc" / "echo" / "run.sh").write_text("echo plain script on @slavename@\n")
    (suite / "tc" / "net").mkdir()
    (suite / "tc" / "net" / "run.sh").write_text("phalanx-net isolate h0.phalanx.test || true\n")
    (suite / "suite.yaml").write_text(f"name: s\ncluster: c\ntests:\n{cases}")
    return suite


def test_an_installed_plugin_adds_a_kind_and_a_provider_that_phalanx_run_uses(
    site: Path, tmp_path: Path
) -> None:
    suite = repo(
        tmp_path / "repo",
        provider="demo-twins",
        cases="  - name: stamp\n    kind: demo-stamp\n    word: hello\n  - echo\n  - net\n",
    )
    done = phalanx(site, tmp_path, "run", str(suite), "--plain", "--results", "out")
    assert done.returncode == 0, done.stdout + done.stderr
    (folder,) = (tmp_path / "out").iterdir()
    results = json.loads((folder / "results.json").read_text())
    assert {c["name"]: c["status"] for c in results["cases"]} == {
        "stamp": "passed",
        "echo": "passed",
        "net": "passed",
    }
    hosts = ["h0.phalanx.test", "h1.phalanx.test"]
    # The plug-in's runner ran in each host's agent, in the host's folder...
    for host in hosts:
        assert (folder / "hosts" / host / "stamps.txt").read_text() == f"hello {host}\n"
    # ...and its output is the stage's, as any kind's is.
    (stamp,) = [c for c in results["cases"] if c["name"] == "stamp"]
    tails = json.dumps(stamp)
    assert all(f"stamped 'hello' on {host}" in tails for host in hosts), tails
    # The plug-in's provider was asked for everything, in order, once.
    log = (folder / "hosts" / "twins.log").read_text().splitlines()
    assert log == ["open c", "up " + " ".join(hosts), "down", "close"]
    # What it said it cannot do is what a stage that asks is told.
    (net,) = [c for c in results["cases"] if c["name"] == "net"]
    assert (
        "phalanx-net: network faults need hosts with a network of their own (provider: netns "
        "or qemu); this run's hosts are demo-twins hosts (local processes)"
    ) in json.dumps(net)


def test_an_unknown_kind_or_provider_names_file_line_key_and_what_is_installed(
    site: Path, tmp_path: Path
) -> None:
    suite = repo(
        tmp_path / "kind",
        provider="local",
        cases="  - echo\n  - name: odd\n    kind: telepathy\n",
    )
    done = phalanx(site, tmp_path, "run", str(suite), "--plain")
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        f"{(suite / 'suite.yaml').relative_to(tmp_path)}:6: tests.odd.kind: unknown case kind 'telepathy' (installed: "
        "broken-kind, declarative, demo-stamp, executable, python, scripts, vm, walks)"
    ) in done.stdout + done.stderr

    suite = repo(tmp_path / "provider", provider="cloud", cases="  - echo\n")
    done = phalanx(site, tmp_path, "run", str(suite), "--plain")
    assert done.returncode == 2, done.stdout + done.stderr
    cluster = Path("provider", "clusters", "c.yaml")  # as the cwd shows it
    assert (
        f"{cluster}:2: provider: unknown provider 'cloud' (installed: agents, broken-provider, "
        "demo-twins, local, netns, podman, qemu, ssh)"
    ) in done.stdout + done.stderr

    done = phalanx(site, tmp_path, "run", str(suite), "--provider", "cloud")
    assert done.returncode == 2
    assert "--provider: unknown provider 'cloud' (installed: agents, broken-provider, " in (
        done.stderr
    )


def test_a_plugin_that_cannot_be_imported_names_its_distribution_and_why(
    site: Path, tmp_path: Path
) -> None:
    why = "ModuleNotFoundError: No module named 'phalanx_missing_dependency'"
    suite = repo(tmp_path / "kind", provider="local", cases="  - name: b\n    kind: broken-kind\n")
    done = phalanx(site, tmp_path, "validate", str(suite.parents[1]))
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        f"{(suite / 'suite.yaml').relative_to(tmp_path)}:5: tests.b.kind: the case kind 'broken-kind' "
        f"(phalanx_broken:KIND, from distribution phalanx-broken 0.2) cannot be loaded: {why}"
    ) in done.stdout + done.stderr

    # A provider is imported when a run needs it: the run is an
    # infrastructure error (exit 3) that says which plug-in and why.
    suite = repo(tmp_path / "provider", provider="broken-provider", cases="  - echo\n")
    done = phalanx(site, tmp_path, "run", str(suite), "--plain", "--results", "out")
    assert done.returncode == 3, done.stdout + done.stderr
    (folder,) = (tmp_path / "out").iterdir()
    reason = json.loads((folder / "results.json").read_text())["reason"]
    assert reason == (
        "provisioning failed: the provider 'broken-provider' (phalanx_broken:make, from "
        f"distribution phalanx-broken 0.2) cannot be loaded: {why}"
    )


PROBE = """
import json, sys
from phalanx.cli import main
code = main(sys.argv[1:])
mine = sorted(m for m in sys.modules if m.startswith(("phalanx.kinds.", "phalanx.providers.",
              "phalanx.host.")))
print(json.dumps({"code": code, "modules": mine, "scanned": "importlib.metadata" in sys.modules}),
      file=sys.stderr)
"""


def test_a_run_imports_only_the_kinds_and_provider_it_uses(tmp_path: Path) -> None:
    suite = repo(tmp_path / "repo", provider="local", cases="  - echo\n")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "run", str(suite), "--plain"],
        cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )  # fmt: skip
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, done.stderr
    modules = set(report["modules"])
    assert {"phalanx.kinds.scripts", "phalanx.providers.local"} <= modules
    unused = {
        "phalanx.kinds.python",
        "phalanx.kinds.walks",
        "phalanx.kinds.vm",
        "phalanx.kinds.executable",
        "phalanx.providers.ssh",
        "phalanx.providers.netns",
        "phalanx.providers.qemu",
        "phalanx.host.pyrunner",
        "phalanx.host.vmrunner",
    }
    assert not modules & unused, sorted(modules & unused)


# --- the mechanism, in this process --------------------------------------------------


def test_phalanx_own_entries_load_under_their_own_names() -> None:
    for name in KINDS.catalog.builtins:
        assert KINDS.get(name).name == name
    for name in TASKS.catalog.builtins:
        assert TASKS.get(name).type == name
    for name in PROVIDERS.catalog.builtins:
        assert callable(PROVIDERS.get(name))
    # Every task type phalanx makes has its runner on the host, and no more.
    assert set(RUNNERS.catalog.builtins) == set(TASKS.catalog.builtins)
    for name in RUNNERS.catalog.builtins:
        assert callable(RUNNERS.get(name))


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Installs distributions (name → (modules, entry points)) on this
    process's path, read afresh; forgotten after the test."""

    def install(dist: str, modules: dict[str, str], entry_points: str) -> None:
        wheel = build_wheel(tmp_path / "wheels", dist, "1.0", modules, entry_points)
        pip_install(wheel, tmp_path / "site")
        plugins.rescan()

    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield install
    for name in [m for m in sys.modules if m.startswith("phx_")]:
        del sys.modules[name]
    plugins.rescan()


def colours() -> Registry[str]:
    def accept(name: str, thing: object) -> str:
        if not isinstance(thing, str):
            raise TypeError(f"it is a {type(thing).__name__}, not text")
        return thing

    return Registry(Catalog("phx.colours", "colour", {"red": "phx_builtin:RED"}), accept)


def test_a_name_declared_twice_is_refused_naming_both_distributions(installed) -> None:
    installed("phx-one", {"phx_one": "BLUE = 'blue'\n"}, "[phx.colours]\nblue = phx_one:BLUE\n")
    installed("phx-two", {"phx_two": "BLUE = 'navy'\n"}, "[phx.colours]\nblue = phx_two:BLUE\n")
    with pytest.raises(PluginError) as raised:
        colours().get("blue")
    assert str(raised.value) == (
        "the colour 'blue' is declared by more than one distribution "
        "(phx-one 1.0 and phx-two 1.0); uninstall one"
    )


def test_a_plugin_never_replaces_one_of_phalanx_own(installed, tmp_path: Path) -> None:
    (tmp_path / "site").mkdir(exist_ok=True)
    (tmp_path / "site" / "phx_builtin.py").write_text("RED = 'red'\n")
    installed("phx-red", {"phx_red": "raise SystemExit('never imported')\n"},
              "[phx.colours]\nred = phx_red:RED\ngreen = phx_red:GREEN\n")  # fmt: skip
    registry = colours()
    assert registry.get("red") == "red"
    assert registry.names() == ["green", "red"]
    assert [e.origin for e in registry.catalog.shadowed()] == ["phx-red 1.0"]
    assert "phx_red" not in sys.modules  # naming it cost no import


def test_what_a_plugin_names_is_checked_and_loaded_once(installed) -> None:
    installed(
        "phx-odd",
        {"phx_odd": "import itertools\nCOUNT = itertools.count()\nPINK = 'pink'\nGREY = 7\n"},
        "[phx.colours]\npink = phx_odd:PINK\ngrey = phx_odd:GREY\nteal = phx_odd:TEAL\n",
    )
    registry = colours()
    assert "teal" in registry and "mauve" not in registry
    assert registry.get("pink") is registry.get("pink")
    with pytest.raises(PluginError, match=r"'grey' \(phx_odd:GREY, from distribution "
                       r"phx-odd 1.0\) is not a colour: it is a int, not text"):  # fmt: skip
        registry.get("grey")
    with pytest.raises(PluginError, match="cannot be loaded: AttributeError: "):
        registry.get("teal")
    with pytest.raises(UnknownPlugin) as unknown:
        registry.get("mauve")
    assert str(unknown.value) == "unknown colour 'mauve' (installed: grey, pink, red, teal)"


def test_a_kind_registered_in_process_is_checked_like_an_installed_one() -> None:
    class Nameless:
        name = "other"

    KINDS.catalog.registered["nameless"] = Nameless()
    try:
        with pytest.raises(PluginError, match="it has no options, prepare, stages, task, judge"):
            KINDS.get("nameless")
    finally:
        KINDS.unregister("nameless")


def test_phalanx_plugins_lists_what_is_installed_and_what_cannot_load(
    site: Path, tmp_path: Path
) -> None:
    done = phalanx(site, tmp_path, "plugins")
    assert done.returncode == 2, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if not line.startswith("error:")]
    assert rows == [
        ["kind", "broken-kind", "phalanx_broken:KIND", "phalanx-broken", "0.2", "cannot", "be",
         "loaded"],
        ["kind", "demo-stamp", "phalanx_demo:STAMP", "phalanx-demo", "0.1", "ok"],
        ["kind", "scripts", "phalanx_broken:SCRIPTS", "phalanx-broken", "0.2", "ignored:",
         "phalanx", "has", "its", "own"],
        ["task", "demo-stamp", "phalanx_demo:StampTask", "phalanx-demo", "0.1", "ok"],
        ["runner", "demo-stamp", "phalanx_demo:run_stamp", "phalanx-demo", "0.1", "ok"],
        ["provider", "broken-provider", "phalanx_broken:make", "phalanx-broken", "0.2", "cannot",
         "be", "loaded"],
        ["provider", "demo-twins", "phalanx_demo:TwinsProvider", "phalanx-demo", "0.1", "ok"],
    ]  # fmt: skip
    errors = [line for line in done.stdout.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: the {what} (phalanx_broken:{attr}, from distribution phalanx-broken 0.2) "
        "cannot be loaded: ModuleNotFoundError: No module named 'phalanx_missing_dependency'"
        for what, attr in [
            ("case kind 'broken-kind'", "KIND"),
            ("provider 'broken-provider'", "make"),
        ]
    ]
