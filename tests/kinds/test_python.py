"""Python role tests (the CloudPunch contract) on real agents."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from phalanx.model import Case, Status
from tests.coordinator.runhelpers import output, run, suite

# What every test's config holds besides params, role and hostname: the keys
# CloudPunch gives (tests/compat/test_cloudpunch.py) and the partner's name.
CLOUDPUNCH_KEYS = (
    "server_client_mode",
    "servers_give_results",
    "overtime_results",
    "network_mode",
    "test",
    "test_mode",
    "test_start_delay",
    "match_ip",
    "match_host",
)

PING = '''
import threading, socket
import phalanx


class CloudPunchTest(threading.Thread):
    """Written as CloudPunch wants it: a Thread subclass, config in __init__."""

    def __init__(self, config):
        self.config = config
        self.final_results = "NoData"
        super().__init__()

    def run(self):
        if self.config["role"] == "server":
            phalanx.send("up-" + self.config["hostname"], "yes")
        else:
            partner = self.config["match_ip"]
            assert phalanx.wait("up-" + self.config["partner_name"], timeout=20) == "yes"
        phalanx.sync("done", timeout=20)
        self.final_results = {
            "role": self.config["role"],
            "match_ip": self.config["match_ip"],
            "extra": self.config["extra"],
            "rate": len(self.config["hostname"]),
        }
'''

PLAIN = """
class Plain:
    def __init__(self, config):
        self.config = config
        self.final_results = "NoData"

    def run(self):
        if self.config.get("boom"):
            raise ValueError("the test said boom")
        if self.config.get("empty"):
            self.final_results = None
        else:
            self.final_results = {"seen": sorted(self.config)}


class Second:
    def __init__(self, config):
        self.final_results = "second"

    def run(self):
        pass
"""


def python_case(name: str, source: str, classes: Any, **options: Any) -> Case:
    params = options.pop("params", {})
    return Case(
        name=name,
        kind="python",
        params=params,
        options={"class": classes, "modules": {"roletests": source}, **options},
    )


def test_server_client_pairs_get_each_others_address(tmp_path: Path):
    c = python_case(
        "pairs",
        PING.replace('self.config["partner_name"]', '"h0.phalanx.test"'),
        "roletests:CloudPunchTest",
        server_client_mode=True,
        params={"extra": "given"},
    )
    # Two servers, two clients: h0, h1 serve; h2, h3 are their clients.
    s = suite(c)
    hosts = tuple(
        replace(h, roles=("server",) if i < 2 else ("client",))
        for i, h in enumerate(s.cluster.hosts)
    )
    s = replace(s, cluster=replace(s.cluster, hosts=hosts))
    # Every client waits for h0's "up"; h1 sends its own, so the sync is the real barrier.
    result, folder = run(s, tmp_path)
    case = result.cases[0]
    assert case.status is Status.PASSED, case.reason
    by_host = {h.host: h.data["final_results"]["roletests"] for h in case.stages[0].hosts}
    assert by_host["h0.phalanx.test"]["role"] == "server"
    assert by_host["h2.phalanx.test"]["role"] == "client"
    # server i pairs with client i; local hosts are reached on loopback
    assert {r["match_ip"] for r in by_host.values()} == {"127.0.0.1"}
    assert all(r["extra"] == "given" for r in by_host.values())
    assert "final_results[roletests]" in output(folder, result, "pairs", "run", "h3.phalanx.test")


def test_server_i_pairs_with_client_i_and_each_gets_the_others_address():
    from phalanx.kinds.python import host_config
    from tests.coordinator.runhelpers import suite as make_suite

    s = make_suite(n=5)  # h0 server; h1..h4 clients
    hosts = tuple(
        replace(h, roles=("server",) if i in (0, 2) else ("client",))
        for i, h in enumerate(s.cluster.hosts)
    )
    s = replace(s, cluster=replace(s.cluster, hosts=hosts))
    c = python_case("p", PLAIN, "roletests:Plain", server_client_mode=True)
    addresses = {h.name: f"10.0.0.{i}" for i, h in enumerate(hosts)}
    match = {h.short_name: host_config(s, c, h, addresses)["match_ip"] for h in hosts}
    # servers h0, h2; clients h1, h3, h4: h0<->h1, h2<->h3, h4 unpaired
    assert match == {
        "h0": "10.0.0.1",
        "h1": "10.0.0.0",
        "h2": "10.0.0.3",
        "h3": "10.0.0.2",
        "h4": None,
    }


def test_without_server_client_mode_only_servers_run(tmp_path: Path):
    c = python_case("solo", PLAIN, "roletests:Plain", params={"answer": 42})
    result, _ = run(suite(c, n=3), tmp_path)
    stage = result.cases[0].stages[0]
    assert [h.host for h in stage.hosts] == ["h0.phalanx.test"]
    seen = stage.hosts[0].data["final_results"]["roletests"]["seen"]
    assert seen == sorted(["answer", "hostname", "role", *CLOUDPUNCH_KEYS])


def test_a_test_that_raises_fails_with_the_exception_text(tmp_path: Path):
    c = python_case("boom", PLAIN, "roletests:Plain", params={"boom": True})
    result, folder = run(suite(c, n=1), tmp_path)
    host = result.cases[0].stages[0].hosts[0]
    assert host.status is Status.FAILED
    assert host.reason == "roletests:Plain raised ValueError: the test said boom"
    assert "Traceback" in output(folder, result, "boom", "run", host.host)


def test_empty_final_results_is_an_error(tmp_path: Path):
    c = python_case("empty", PLAIN, "roletests:Plain", params={"empty": True})
    result, _ = run(suite(c, n=1), tmp_path)
    host = result.cases[0].stages[0].hosts[0]
    assert host.status is Status.ERROR
    assert "empty final_results" in (host.reason or "")


def test_several_classes_in_list_and_concurrent_mode(tmp_path: Path):
    for mode in ("list", "concurrent"):
        c = python_case(mode, PLAIN, ["roletests:Plain", "roletests:Second"], test_mode=mode)
        result, _ = run(suite(c, n=1), tmp_path / mode)
        data = result.cases[0].stages[0].hosts[0].data["final_results"]
        # two classes of one module: the module's name alone would clash
        assert data["roletests:Second"] == "second"
        assert data["roletests:Plain"] == {"seen": sorted(["hostname", "role", *CLOUDPUNCH_KEYS])}


def test_an_unknown_class_fails_clearly(tmp_path: Path):
    c = python_case("missing", PLAIN, "roletests:Nope")
    result, _ = run(suite(c, n=1), tmp_path)
    host = result.cases[0].stages[0].hosts[0]
    assert host.status is Status.FAILED
    assert "module 'roletests' has no class 'Nope'" in (host.reason or "")


def test_a_hung_test_times_out(tmp_path: Path):
    source = "import time\nclass Hang:\n    def __init__(self, c): pass\n    def run(self): time.sleep(300)\n"
    c = replace(python_case("hang", source, "roletests:Hang"), timeout=1.0)
    result, _ = run(suite(c, n=1), tmp_path)
    assert result.cases[0].stages[0].hosts[0].status is Status.TIMEOUT


def test_each_partner_also_gets_the_others_host_name():
    from phalanx.kinds.python import host_config
    from tests.coordinator.runhelpers import suite as make_suite

    s = make_suite(n=3)  # h0 server; h1, h2 clients
    c = python_case("p", PLAIN, "roletests:Plain", server_client_mode=True)
    names = {h.short_name: host_config(s, c, h, {})["match_host"] for h in s.cluster.hosts}
    assert names == {"h0": "h1.phalanx.test", "h1": "h0.phalanx.test", "h2": None}
