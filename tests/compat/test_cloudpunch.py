"""CloudPunch tests in the shape its slave runs them (fixtures written here,
in its style): a module per test holding `CloudPunchTest(Thread)`, built
with the config dict, `final_results` kept per host and keyed by the
module's name. Run through `phalanx run` on local hosts."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tests.tree.helpers import phalanx, results

# Every key CloudPunch's slave gives a test, besides its own config file's.
CLOUDPUNCH_KEYS = (
    "server_client_mode",
    "servers_give_results",
    "overtime_results",
    "network_mode",
    "test",
    "test_mode",
    "test_start_delay",
    "match_ip",
    "role",
)

# Reports what it was given, as a test that only reads its config would.
KEYS = f"""\
from threading import Thread

KEYS = {CLOUDPUNCH_KEYS!r}


class CloudPunchTest(Thread):

    def __init__(self, config):
        self.config = config
        self.final_results = 'NoData'
        super(CloudPunchTest, self).__init__()

    def run(self):
        self.final_results = dict((k, self.config[k]) for k in KEYS)
"""

# A latency test written the way CloudPunch's ping test is, ported to
# Python 3 mechanically: dict.items() for iteritems(), collections.abc.Mapping,
# str(e) for e.message, a text-mode pipe.
LATENCY = """\
import collections.abc
import logging
import re
import subprocess
import sys
import time

from threading import Thread

PINGER = "import sys\\nfor n in range(int(sys.argv[1])): print('reply from %s: time=0.%d ms' % (sys.argv[2], n + 1))"


class CloudPunchTest(Thread):

    def __init__(self, config):
        self.config = config
        self.final_results = []
        super(CloudPunchTest, self).__init__()

    def run(self):
        try:
            default_config = {
                'latency': {
                    'target': 'localhost',
                    'count': 3
                }
            }
            self.merge_configs(default_config, self.config)
            self.config = default_config
            self.runtest()
        except Exception as e:
            logging.error('%s: %s', type(e).__name__, e)
            self.final_results = '%s: %s' % (type(e).__name__, e)

    def runtest(self):
        target = self.config['match_ip'] if self.config['server_client_mode'] else self.config['latency']['target']
        count = str(self.config['latency']['count'])
        results = []
        pinger = subprocess.Popen([sys.executable, '-c', PINGER, count, target],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in iter(pinger.stdout.readline, ''):
            latency = re.findall(r'time=(\\d+\\.\\d+)', line)
            if latency:
                if self.config['overtime_results']:
                    self.final_results.append({'time': time.time(), 'latency': float(latency[0]), 'target': target})
                else:
                    results.append(float(latency[0]))
        pinger.stdout.close()
        pinger.wait()
        if not self.config['overtime_results']:
            self.final_results = {'latency': round(sum(results) / len(results), 3), 'target': target}

    def merge_configs(self, default, new):
        for key, value in new.items():
            if (key in default and isinstance(default[key], dict) and
                    isinstance(new[key], collections.abc.Mapping)):
                self.merge_configs(default[key], new[key])
            else:
                default[key] = new[key]
"""

# Catches its own exception into final_results, as CloudPunch's tests do;
# `verdict` says how it tells phalanx it failed.
CAUGHT = """\
import logging
from threading import Thread

import phalanx


class CloudPunchTest(Thread):

    def __init__(self, config):
        self.config = config
        self.final_results = []
        super(CloudPunchTest, self).__init__()

    def run(self):
        try:
            raise IOError('no route to %s' % self.config['role'])
        except Exception as e:
            logging.error('%s: %s', type(e).__name__, e)
            self.final_results = '%s: %s' % (type(e).__name__, e)
            if self.config['verdict'] == 'fail':
                phalanx.fail(self.final_results)
            elif self.config['verdict'] == 'passed':
                self.passed = False
"""

# phalanx.fail inside a try that catches everything: recorded, not raised,
# so the test's own handler cannot swallow it.
SWALLOWS = """\
from threading import Thread

import phalanx


class CloudPunchTest(Thread):

    def __init__(self, config):
        self.config = config
        self.final_results = 'NoData'
        super(CloudPunchTest, self).__init__()

    def run(self):
        try:
            phalanx.fail('throughput below the floor')
        except Exception:
            self.final_results = 'swallowed'
        self.final_results = {'mbps': 3}
"""

CLUSTER = """\
name: pairs
hosts:
  - {name: srv1.cp.test, roles: [server]}
  - {name: srv2.cp.test, roles: [server]}
  - {name: cli1.cp.test, roles: [client]}
  - {name: cli2.cp.test, roles: [client]}
"""


def repo(root: Path, cases: str, params: str = "{}") -> Path:
    """A definitions repo with suite `cp`: the test modules next to suite.yaml."""
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "pairs.yaml").write_text(CLUSTER)
    suite = root / "test-suites" / "cp"
    suite.mkdir(parents=True)
    for name, source in {
        "keys": KEYS,
        "latency": LATENCY,
        "caught": CAUGHT,
        "swallows": SWALLOWS,
    }.items():
        (suite / f"{name}.py").write_text(source)
    (suite / "suite.yaml").write_text(
        f"name: cp\ncluster: pairs\nparams: {params}\ntests:\n{cases}"
    )
    return root


def run_stage(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The case's `run` stage, per host."""
    stage = next(s for s in case["stages"] if s["name"] == "run")
    return {h["host"]: h for h in stage["hosts"]}


def by_case(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in data["cases"]}


# --- 10 and 11: every config key, results keyed by module -------------------------


def test_every_key_cloudpunch_gives_reaches_the_test_and_results_are_keyed_by_module(
    tmp_path: Path,
) -> None:
    cases = """\
  - name: defaults
    kind: python
    class: keys:CloudPunchTest
  - name: paired
    kind: python
    classes: [keys:CloudPunchTest, latency:CloudPunchTest]
    server_client_mode: true
    overtime_results: true
    network_mode: single-network
    test_mode: concurrent
    test_start_delay: 0.1
"""
    root = repo(tmp_path / "repo", cases, params="{latency: {count: 2}}")
    done = phalanx(str(root), "-s", "cp", "--plain", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    found = by_case(results(tmp_path))

    # CloudPunch's defaults; without server/client mode only servers run.
    defaults = run_stage(found["defaults"])
    assert sorted(defaults) == ["srv1.cp.test", "srv2.cp.test"]
    assert defaults["srv1.cp.test"]["data"]["final_results"] == {
        "keys": {
            "server_client_mode": False,
            "servers_give_results": True,
            "overtime_results": False,
            "network_mode": "full",
            "test": ["keys"],
            "test_mode": "list",
            "test_start_delay": 0,
            "match_ip": None,
            "role": "server",
        }
    }

    paired = run_stage(found["paired"])
    assert sorted(paired) == ["cli1.cp.test", "cli2.cp.test", "srv1.cp.test", "srv2.cp.test"]
    client = paired["cli2.cp.test"]["data"]["final_results"]
    # keyed as CloudPunch keys them: by the test module's name
    assert sorted(client) == ["keys", "latency"]
    assert client["keys"] == {
        "server_client_mode": True,
        "servers_give_results": True,
        "overtime_results": True,
        "network_mode": "single-network",
        "test": ["keys", "latency"],
        "test_mode": "concurrent",
        "test_start_delay": 0.1,
        "match_ip": "127.0.0.1",
        "role": "client",
    }
    # the ported ping-style test ran: over time results, against its partner,
    # with the count from params merged over its defaults
    overtime = client["latency"]
    assert [r["latency"] for r in overtime] == [0.1, 0.2]
    assert {r["target"] for r in overtime} == {"127.0.0.1"}
    assert paired["srv1.cp.test"]["data"]["final_results"]["keys"]["role"] == "server"


def test_servers_give_results_false_keeps_only_the_clients_results(tmp_path: Path) -> None:
    cases = """\
  - name: clients_only
    kind: python
    class: latency:CloudPunchTest
    server_client_mode: true
    servers_give_results: false
"""
    root = repo(tmp_path / "repo", cases)
    done = phalanx(str(root), "-s", "cp", "--plain", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    case = by_case(results(tmp_path))["clients_only"]
    assert case["status"] == "passed"
    hosts = run_stage(case)
    kept = {name: h["data"]["final_results"] for name, h in hosts.items()}
    assert kept["srv1.cp.test"] == {} and kept["srv2.cp.test"] == {}
    for client in ("cli1.cp.test", "cli2.cp.test"):
        assert kept[client]["latency"] == {"latency": 0.2, "target": "127.0.0.1"}


# --- 11: a test that caught its exception can still fail -------------------------


def test_phalanx_fail_and_passed_false_fail_the_case_with_the_reason(tmp_path: Path) -> None:
    cases = """\
  - name: by_fail
    kind: python
    class: caught:CloudPunchTest
    params: {verdict: fail}
  - name: by_passed
    kind: python
    class: caught:CloudPunchTest
    params: {verdict: passed}
  - name: silent
    kind: python
    class: caught:CloudPunchTest
    params: {verdict: none}
  - name: not_swallowed
    kind: python
    class: swallows:CloudPunchTest
"""
    root = repo(tmp_path / "repo", cases)
    done = phalanx(str(root), "-s", "cp", "--plain", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    found = by_case(results(tmp_path))
    status = {name: c["status"] for name, c in found.items()}
    assert status == {
        "by_fail": "failed",
        "by_passed": "failed",
        "silent": "passed",  # what CloudPunch would report: the error text as a result
        "not_swallowed": "failed",
    }
    host = run_stage(found["by_fail"])["srv1.cp.test"]
    assert host["reason"] == "caught:CloudPunchTest failed: OSError: no route to server"
    host = run_stage(found["by_passed"])["srv1.cp.test"]
    assert host["reason"] == (
        'caught:CloudPunchTest failed: passed is False (final_results: "OSError: no route to server")'
    )
    host = run_stage(found["not_swallowed"])["srv2.cp.test"]
    assert host["reason"] == "swallows:CloudPunchTest failed: throughput below the floor"
    # the results are kept all the same
    assert host["data"]["final_results"] == {"swallows": {"mbps": 3}}


def test_phalanx_fail_outside_a_python_test_says_so() -> None:
    import pytest

    import phalanx

    with pytest.raises(RuntimeError, match="outside a python test: why"):
        phalanx.fail("why")


# --- 12: the interpreter a case's tests run under ---------------------------------

WHERE = """\
import sys
from threading import Thread


class CloudPunchTest(Thread):

    def __init__(self, config):
        self.config = config
        self.final_results = 'NoData'
        super(CloudPunchTest, self).__init__()

    def run(self):
        self.final_results = {'executable': sys.executable}
"""


def test_python_names_the_interpreter_and_a_bad_one_is_a_clear_error(tmp_path: Path) -> None:
    bin_dir = tmp_path / "other" / "bin"
    bin_dir.mkdir(parents=True)
    other = bin_dir / "python3"
    other.symlink_to(sys.executable)  # the same Python by another path
    old = bin_dir / "python2"  # says it is 2.7, as a Python 2 would
    old.write_text("#!/bin/sh\necho 2 7\n")
    old.chmod(0o755)
    cases = f"""\
  - name: other
    kind: python
    class: where:CloudPunchTest
    python: {other}
  - name: own
    kind: python
    class: where:CloudPunchTest
  - name: missing
    kind: python
    class: where:CloudPunchTest
    python: {tmp_path / "nowhere" / "python"}
  - name: too_old
    kind: python
    class: where:CloudPunchTest
    python: {old}
"""
    root = repo(tmp_path / "repo", cases)
    (root / "test-suites" / "cp" / "where.py").write_text(WHERE)
    # PYTHONPATH the agent does not have: the option alone must make phalanx importable
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = phalanx(str(root), "-s", "cp", "--plain", cwd=tmp_path, env=env)
    assert done.returncode == 3, done.stdout + done.stderr  # cases in error
    found = by_case(results(tmp_path))
    assert found["other"]["status"] == "passed"
    ran = run_stage(found["other"])["srv1.cp.test"]["data"]["final_results"]["where"]
    assert ran == {"executable": str(other)}
    own = run_stage(found["own"])["srv1.cp.test"]["data"]["final_results"]["where"]
    assert own == {"executable": sys.executable}
    missing = run_stage(found["missing"])["srv1.cp.test"]
    assert missing["status"] == "error"
    assert missing["reason"] == (
        f"python: {tmp_path / 'nowhere' / 'python'}: no such executable on this host"
    )
    too_old = run_stage(found["too_old"])["srv1.cp.test"]
    assert too_old["status"] == "error"
    assert f"{old} is Python 2.7; phalanx's test child needs Python >= 3.11" in too_old["reason"]


def test_cloudpunch_keys_are_checked_when_the_suite_loads(tmp_path: Path) -> None:
    cases = """\
  - name: star
    kind: python
    class: keys:CloudPunchTest
    network_mode: star
  - name: maybe
    kind: python
    class: keys:CloudPunchTest
    servers_give_results: maybe
  - name: number
    kind: python
    class: keys:CloudPunchTest
    python: 3
"""
    root = repo(tmp_path / "repo", cases)
    done = phalanx(str(root), "-s", "cp", "--plain", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    for problem in (
        "suite.yaml:8: tests.star.network_mode: must be full or single-router or"
        " single-network, not 'star'",
        "suite.yaml:12: tests.maybe.servers_give_results: must be true or false, not 'maybe'",
        "suite.yaml:16: tests.number.python: must be non-empty text, not 3",
    ):
        assert problem in done.stderr
    assert not (tmp_path / "phalanx-results").exists()
