"""Asterisk test-suite trees in the shapes the real suite uses (fixtures
written here, in its format): they load, list and run unchanged."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from tests.tree.helpers import make_test, phalanx, reasons, results, statuses

PASS = "#!/bin/sh\nexit 0\n"
SHOW_ENV = (
    "#!/bin/sh\n"
    'echo "active=$TESTSUITE_ACTIVE_TEST valgrind=$VALGRIND_ENABLE pcap=$PCAP'
    ' config=$TESTSUITE_CONFIG"\n'
    'touch "$PHALANX_SANDBOX/left-behind"\n'
)


def suite(
    root: Path, listing: dict[str, list[str]], tests: dict[str, tuple[str, str | None]]
) -> Path:
    """A test-suite checkout: `root/tests` with a tests.yaml per folder
    (`listing`: folder -> entries as `test: x` / `dir: y`) and the tests."""
    tree = root / "tests"
    for folder, entries in listing.items():
        where = tree / folder if folder else tree
        where.mkdir(parents=True, exist_ok=True)
        lines = ["tests:"] + [f"    - {entry}" for entry in entries]
        (where / "tests.yaml").write_text("\n".join(lines) + "\n")
    for name, (config, run_test) in tests.items():
        make_test(tree, name, config, run_test)
    return tree


# --- 1: the real tree's shapes load; a broken test never blocks the others -----------


MAPPING_DEPS = """\
testinfo:
    summary: 'Mapping-form dependencies'
    description: |
        sipp and openssl give their wants as mappings.
properties:
    dependencies:
        - sipp :
            version : 'v3.0'
            feature : 'PCAP'
        - openssl :
            version : '1.0.1'
        - app : 'sh'
    tags:
        - pjsip
"""

DUPLICATE_KEYS = """\
testinfo:
    summary: 'first summary'
    summary: 'the last one wins'
properties:
    tags:
        - manager
"""

OBJECT_LIST = """\
testinfo:
    summary: 'A test-object given as a list, and no config sections'
test-modules:
    test-object:
        -
            typename: 'test_case.TestCaseModule'
            config-section: 'test-object-config'
        -
            typename: 'test_case.OtherVersionModule'
    modules:
        -
            typename: 'pluggable_modules.EventActionModule'
            config-section: 'no-such-section'
properties:
    tags:
        - ari
"""

BROKEN = """\
testinfo:
    summary: 'broken on purpose'
properties:
    expected-result: perhaps
"""


def test_the_real_trees_shapes_load_and_a_broken_test_is_only_skipped(tmp_path: Path) -> None:
    tree = suite(
        tmp_path,
        {
            "": ["dir: 'channels'", "dir: 'manager'", "dir: 'custom'"],
            "channels": ["test: 'mapping_deps'", "test: 'object_list'"],
            "manager": ["test: 'duplicate_keys'", "test: 'broken'", "test: 'gone'"],
        },
        {
            "channels/mapping_deps": (MAPPING_DEPS, PASS),
            "channels/object_list": (OBJECT_LIST, PASS),
            "manager/duplicate_keys": (DUPLICATE_KEYS, PASS),
            "manager/broken": (BROKEN, PASS),
        },
    )
    listed = phalanx(str(tree), "-l", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[1] for line in listed.stdout.splitlines()]
    assert names == [
        "tests/channels/mapping_deps",
        "tests/channels/object_list",
        "tests/manager/broken",
        "tests/manager/duplicate_keys",
        "tests/manager/gone",
    ]
    assert "custom" not in listed.stderr  # passed over silently, as runtests.py does
    assert "2 tests cannot be read" in listed.stderr
    lines = {line.split()[1]: line for line in listed.stdout.splitlines()}
    assert lines["tests/manager/broken"].startswith("S ")
    assert (
        "tests/manager/broken/test-config.yaml:4: properties.expected-result"
        in (lines["tests/manager/broken"])
    )
    assert "no folder 'gone'" in lines["tests/manager/gone"]
    assert lines["tests/manager/duplicate_keys"].startswith("R ")
    assert lines["tests/channels/object_list"].startswith("R ")
    # Mapping-form dependencies are kept as what they ask for.
    from phalanx.load import testconfig, yamlsrc

    config = testconfig.parse(yamlsrc.read(tree / "channels/mapping_deps/test-config.yaml"))
    assert config.dependencies == (
        ("sipp", "version=v3.0 feature=PCAP"),
        ("openssl", "version=1.0.1"),
        ("app", "sh"),
    )
    assert config.errors == []
    done = phalanx(str(tree), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    data = results(tmp_path)
    got = statuses(data)
    assert got["tests/manager/duplicate_keys"] == "passed"
    assert got["tests/channels/object_list"] == "passed"
    assert got["tests/manager/broken"] == "skipped"
    assert got["tests/manager/gone"] == "skipped"
    assert (reasons(data)["tests/manager/broken"] or "").startswith("skip: broken: ")


def test_a_duplicate_key_stays_an_error_in_phalanx_own_files(tmp_path: Path) -> None:
    from phalanx.load.errors import DefinitionErrors
    from phalanx.load.yamlsrc import parse

    text = "a: 1\na: 2\n"
    try:
        parse(text, tmp_path / "suite.yaml")
    except DefinitionErrors as exc:
        assert "given twice (first on line 1)" in str(exc)
    else:
        raise AssertionError("a duplicate key in phalanx's own file must be an error")
    relaxed = parse(text, tmp_path / "test-config.yaml", allow_duplicates=True)
    assert relaxed.data == {"a": 2}  # the last one wins, as in PyYAML
    assert [d.line for d in relaxed.duplicates] == [2]


# --- 4: the suite's own test-config.yaml ----------------------------------------------

SUITE_CONFIG = """\
global-settings:
    test-configuration: config-quick
    condition-definitions:
        -
            name: 'threads'
            pre:
                typename: 'thread_test_condition.ThreadPreTestCondition'
            post:
                typename: 'thread_test_condition.ThreadPostTestCondition'
        -
            name: 'channels'
            pre:
                typename: 'channel_test_condition.ChannelTestCondition'
            post:
                typename: 'channel_test_condition.ChannelTestCondition'
config-quick:
    exclude-tests:
        - 'slow_'
config-careful:
    properties:
        testconditions:
            - name: 'threads'
"""


def test_the_suites_test_config_excludes_tests_and_names_its_conditions(tmp_path: Path) -> None:
    tree = suite(
        tmp_path,
        {"": ["test: 'slow_voicemail'", "test: 'fast'"]},
        {"slow_voicemail": ("testinfo: {summary: s}\n", PASS), "fast": ("{}\n", PASS)},
    )
    (tmp_path / "test-config.yaml").write_text(SUITE_CONFIG)
    listed = phalanx(str(tree), "-l", cwd=tmp_path)
    assert listed.stdout.splitlines() == [
        "R tests/fast",
        "S tests/slow_voicemail  (skip: excluded by test-config.yaml (config-quick): 'slow_')",
    ]
    assert "conditions defined: threads, channels; in force: none" in listed.stderr
    dry = phalanx(str(tree), "--dry-run", cwd=tmp_path)
    assert dry.stdout.split("\n", 1)[1].split() == ["tests/fast"]
    done = phalanx(str(tree), cwd=tmp_path)
    assert done.returncode == 0
    assert statuses(results(tmp_path)) == {
        "tests/fast": "passed",
        "tests/slow_voicemail": "skipped",
    }
    # Another file chosen: its own configuration is in force.
    other = tmp_path / "careful.yaml"
    other.write_text(
        SUITE_CONFIG.replace(
            "test-configuration: config-quick", "test-configuration: config-careful"
        )
    )
    careful = phalanx(str(tree), "-l", "--testsuite-config", str(other), cwd=tmp_path)
    assert [line[0] for line in careful.stdout.splitlines()] == ["R", "R"]
    assert "in force: threads" in careful.stderr
    missing = phalanx(
        str(tree), "-l", "--testsuite-config", str(tmp_path / "nope.yaml"), cwd=tmp_path
    )
    assert missing.returncode == 2 and "nope.yaml: no such file" in missing.stderr


# --- 5: runtests.py's options and order ---------------------------------------------


def _tagged(*tags: str) -> str:
    return "properties:\n    tags:\n" + "".join(f"        - {t}\n" for t in tags)


def test_runtests_options_select_list_and_order_as_runtests_does(tmp_path: Path) -> None:
    tree = suite(
        tmp_path,
        {"": ["test: 'zulu'", "dir: 'apps'", "test: 'alpha'"], "apps": ["test: 'mid'"]},
        {
            "zulu": (_tagged("pjsip"), SHOW_ENV),
            "apps/mid": (_tagged("ari"), SHOW_ENV),
            "alpha": (
                _tagged("manager") + "    dependencies:\n        - app: 'no-such-app-x'\n",
                PASS,
            ),
        },
    )
    terse = phalanx(str(tree), "--list-terse", cwd=tmp_path)
    assert terse.stdout.splitlines() == [
        "0001 D tests/alpha no-such-app-x",
        "0002 E tests/apps/mid",
        "0003 E tests/zulu",
    ]
    tags = phalanx(str(tree), "-L", cwd=tmp_path)
    assert [line.split()[0] for line in tags.stdout.splitlines()] == ["ari", "manager", "pjsip"]
    # As runtests.py, -g does not change what --list-terse numbers and lists.
    tagged = phalanx(str(tree), "--list-terse", "-g", "ari", cwd=tmp_path)
    assert tagged.stdout == terse.stdout
    either = phalanx(str(tree), "-l", "-g", "pjsip", "-g", "ari", cwd=tmp_path)
    assert [line.split()[1] for line in either.stdout.splitlines()] == [
        "tests/apps/mid",
        "tests/zulu",
    ]
    not_apps = phalanx(str(tree), "-l", "-T", "apps/", cwd=tmp_path)
    assert [line.split()[1] for line in not_apps.stdout.splitlines()] == [
        "tests/alpha",
        "tests/zulu",
    ]
    dry = phalanx(str(tree), "-d", cwd=tmp_path)
    assert dry.stdout.split("\n", 1)[1].split() == ["tests/apps/mid", "tests/zulu"]
    assert "(1 skipped)" in dry.stdout
    config = tmp_path / "test-config.yaml"
    config.write_text(
        "global-settings:\n    test-configuration: config-standard\nconfig-standard:\n"
    )
    done = phalanx(
        str(tree), "-j", "1", "-v", "-c", "-k", "-V", "--pcap", "--keep-full-logs",
        "--testsuite-config", str(config), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("tests/apps/mid", "tests/zulu"):
        assert f"active={name} valgrind=true pcap=yes config={config}" in done.stdout
    assert statuses(results(tmp_path))["tests/alpha"] == "skipped"
    (run,) = (tmp_path / "phalanx-results").iterdir()
    assert not (run / "sandbox").exists()  # -c: passing tests' sandboxes are gone
    shutil.rmtree(tmp_path / "phalanx-results")
    kept = phalanx(str(tree), "-t", "zulu", cwd=tmp_path)
    assert kept.returncode == 0
    (run,) = (tmp_path / "phalanx-results").iterdir()
    assert (run / "sandbox" / "tests_zulu" / "left-behind").exists()


# --- 3: the dependency kinds the real tree declares -----------------------------------


def _exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def test_asterisk_sipp_openssl_buildoption_custom_and_python_dependencies(tmp_path: Path) -> None:
    prefix = tmp_path / "ast"
    _exe(prefix / "sbin" / "asterisk", "#!/bin/sh\nexit 0\n")
    modules = prefix / "lib" / "asterisk" / "modules"
    modules.mkdir(parents=True)
    for module in ("chan_pjsip", "res_fax_spandsp"):
        (modules / f"{module}.so").write_text("")
    header = prefix / "include" / "asterisk" / "buildopts.h"
    header.parent.mkdir(parents=True)
    header.write_text("#define TEST_FRAMEWORK 1\n#define LOW_MEMORY 0\n")
    bin_dir = tmp_path / "bin"
    _exe(bin_dir / "sipp", "#!/bin/sh\necho 'SIPp v3.6.1-TLS-PCAP, version 20190328.'\n")
    # runtests.py asks pyOpenSSL in the tests' interpreter, not the binary:
    # a binary that says 9.9.9 changes nothing, the suite's OpenSSL module does.
    _exe(bin_dir / "openssl", "#!/bin/sh\necho 'OpenSSL 9.9.9 15 Mar 2032'\n")
    tree = tmp_path / "suite" / "tests"
    lib = tmp_path / "suite" / "lib" / "python"
    lib.mkdir(parents=True)
    (lib / "only_in_the_suite.py").write_text("")
    (lib / "OpenSSL").mkdir()
    (lib / "OpenSSL" / "__init__.py").write_text("")
    (lib / "OpenSSL" / "SSL.py").write_text("OPENSSL_VERSION_NUMBER = 0x30000020\n")  # 3.0.2
    needs = {
        "has_module": "- asterisk : 'chan_pjsip'",
        "lacks_module": "- asterisk : 'chan_sip'",
        "build_on": "- buildoption: 'TEST_FRAMEWORK'",
        "build_off": "- buildoption: 'LOW_MEMORY'",
        "sipp_ok": "- sipp :\n            version : 'v3.5'\n            feature : 'PCAP'",
        "sipp_old": "- sipp :\n            version : 'v3.7'",
        "openssl_ok": "- openssl :\n            version : '1.0.2'",
        "openssl_new": "- openssl :\n            version : '3.1.0'",
        "sipp_tls": "- sipp :\n            version : 'v3.7'\n            feature : 'TLS'",
        "fax": "- custom : 'fax'",
        "remote": "- custom : 'remote'",
        "py_suite": "- python : 'only_in_the_suite'",
        "py_missing": "- python : 'no_such_module_anywhere'",
    }
    suite(
        tmp_path / "suite",
        {"": [f"test: '{n}'" for n in needs]},
        {n: (f"properties:\n    dependencies:\n        {d}\n", PASS) for n, d in needs.items()},
    )
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    listed = phalanx(
        str(tree), "-l", "--asterisk", str(prefix / "sbin" / "asterisk"),
        "--python", sys.executable, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    letters = {line.split()[1][len("tests/") :]: line[0] for line in listed.stdout.splitlines()}
    assert letters == {
        "build_off": "U",
        "build_on": "R",
        "fax": "R",
        "has_module": "R",
        "lacks_module": "U",
        "openssl_ok": "R",
        "openssl_new": "U",
        "sipp_tls": "U",
        "py_missing": "U",
        "py_suite": "R",
        "remote": "U",
        "sipp_ok": "R",
        "sipp_old": "U",
    }
    assert "sipp version=v3.7 (found v3.6.1)" in listed.stdout
    assert f"openssl version=3.1.0 (pyOpenSSL in {sys.executable} has OpenSSL 3.0.2)" in (
        listed.stdout
    )
    terse = phalanx(
        str(tree), "--list-terse", "--python", sys.executable, "--test-regex",
        "/(sipp|openssl)_", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert terse.stdout.splitlines() == [
        "0001 D tests/openssl_new 3.1.0",
        "0002 E tests/openssl_ok",
        "0003 E tests/sipp_ok",
        "0004 D tests/sipp_old v3.7",
        "0005 D tests/sipp_tls v3.7-TLS",
    ]
    # Without --asterisk (and none on PATH) a module check says what is missing.
    bare = phalanx(str(tree), "-l", "-t", "has_module", cwd=tmp_path, env=env)
    assert "give --asterisk PATH" in bare.stdout
    # The same checks decide when the tests run.
    done = phalanx(
        str(tree), "--asterisk", str(prefix / "sbin" / "asterisk"), "--python", sys.executable,
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0
    got = statuses(results(tmp_path))
    assert {n[len("tests/") :] for n, s in got.items() if s == "passed"} == {
        n for n, letter in letters.items() if letter == "R"
    }


# --- 2: declarative tests run by the suite's own runner, when it has one ---------------

# A stand-in for the suite's lib/python/asterisk/test_runner.py, written for
# this test: it reports how it was started and passes when the test's
# config names a test-object.
RUNNER = """\
import os, sys
import yaml
name = sys.argv[1]
with open(os.path.join(name, "test-config.yaml")) as f:
    config = yaml.safe_load(f)
print("runner for", name, "cwd", os.getcwd(), "active", os.environ["TESTSUITE_ACTIVE_TEST"])
print("path", os.environ["PYTHONPATH"].split(os.pathsep)[0])
sys.exit(0 if "test-object" in config["test-modules"] else 1)
"""

DECLARATIVE = """\
testinfo:
    summary: 'run by the runner of the suite'
test-modules:
    test-object:
        config-section: test-object-config
        typename: 'sipp.SIPpTestCase'
test-object-config:
    test-iterations:
        -
            scenarios:
                - { 'key-args': {'scenario': 'call.xml', '-p': '5061'} }
"""


def test_declarative_tests_run_by_the_suites_own_runner(tmp_path: Path) -> None:
    root = tmp_path / "testsuite"
    tree = suite(root, {"": ["test: 'sipp_call'"]}, {"sipp_call": (DECLARATIVE, None)})
    package = root / "lib" / "python" / "asterisk"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "test_runner.py").write_text(RUNNER)
    done = phalanx(str(tree), "-v", "--python", sys.executable, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"runner for tests/sipp_call cwd {root} active tests/sipp_call" in done.stdout
    assert f"path {root / 'lib' / 'python'}" in done.stdout
    assert statuses(results(tmp_path)) == {"tests/sipp_call": "passed"}
