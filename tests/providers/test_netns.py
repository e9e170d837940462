"""netns hosts: each a network, UTS and mount namespace of its own on a
bridge. The end-to-end tests run `phalanx run` as a user would and look at
what the stages saw (`hostname`, `ip addr`, /etc/hosts, peers' addresses)
and at what is left on the machine afterwards. They need root and `ip
netns`; without them they skip, saying why."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from phalanx.model import XRDTEST_MASTER, Cluster, Host, Link, Network
from phalanx.providers import bridge
from phalanx.providers.base import ProvisionError
from phalanx.providers.netns import (
    ETC_NETNS,
    STATE_DIR,
    NetnsProvider,
    hosts_file,
    label,
    missing_privileges,
    plan_addresses,
)
from tests.eventually import eventually
from tests.processes import gone, run_folder, wait_for

EXAMPLES = Path(__file__).parents[2] / "examples" / "repo"


def _why_not() -> str | None:
    problem = missing_privileges()
    if problem is not None:
        return problem
    if bridge.tools_missing():
        return f"missing {', '.join(bridge.tools_missing())}"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` does not work here"
    return None


WHY_NOT = _why_not()
if WHY_NOT is not None:
    print(f"netns end-to-end tests skipped: {WHY_NOT}", file=sys.stderr)
needs_netns = pytest.mark.skipif(WHY_NOT is not None, reason=f"netns hosts: {WHY_NOT}")


# --- addresses, names, link conditions: no root needed ------------------------------------


def _net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


def test_the_clusters_network_gives_the_bridge_its_ip_and_hosts_without_one_the_dhcp_range() -> (
    None
):
    cluster = Cluster(
        name="c",
        network=Network(
            ip="10.10.0.254", netmask="255.255.255.0", dhcp_range=("10.10.0.1", "10.10.0.9")
        ),
        hosts=(Host(name="a.t", ip="10.10.0.1"), Host(name="b.t"), Host(name="c.t")),
    )
    plan = plan_addresses(cluster, [(_net("192.0.2.0/24"), "eth0")], 0, "br0")
    assert str(plan.subnet) == "10.10.0.0/24"
    assert str(plan.gateway) == "10.10.0.254"
    assert {n: str(a) for n, a in plan.ips.items()} == {
        "a.t": "10.10.0.1", "b.t": "10.10.0.2", "c.t": "10.10.0.3",
    }  # fmt: skip


def test_hosts_with_addresses_and_no_network_get_their_24_and_the_first_free_gateway() -> None:
    cluster = Cluster(
        name="c", hosts=(Host(name="a.t", ip="10.20.0.1"), Host(name="b.t", ip="10.20.0.2"))
    )
    plan = plan_addresses(cluster, [], 0, "br0")
    assert (str(plan.subnet), str(plan.gateway)) == ("10.20.0.0/24", "10.20.0.3")


def test_hosts_without_addresses_get_a_24_no_route_of_the_machine_overlaps() -> None:
    cluster = Cluster(name="c", hosts=(Host(name="a.t"), Host(name="b.t")))
    taken = [(_net("10.128.0.0/23"), "eth1")]
    plan = plan_addresses(cluster, taken, 0, "br0")
    assert str(plan.subnet) == "10.128.2.0/24"
    assert [str(a) for a in plan.ips.values()] == ["10.128.2.2", "10.128.2.3"]
    assert str(plan.gateway) == "10.128.2.1"


def test_a_network_already_routed_elsewhere_is_refused_with_the_device_that_has_it() -> None:
    cluster = Cluster(name="c", hosts=(Host(name="a.t", ip="10.20.0.1"),))
    with pytest.raises(ProvisionError, match=r"10\.20\.0\.0/24 overlaps 10\.20\.0\.0/16.*dev eth7"):
        plan_addresses(cluster, [(_net("10.20.0.0/16"), "eth7")], 0, "br0")
    # ... but its own bridge (network.bridge_name, kept between runs) may have it.
    plan_addresses(cluster, [(_net("10.20.0.0/24"), "br0")], 0, "br0")


def test_a_host_off_the_network_is_named() -> None:
    cluster = Cluster(
        name="c",
        network=Network(ip="10.1.0.1", netmask="24"),
        hosts=(Host(name="a.t", ip="10.2.0.1"),),
    )
    with pytest.raises(
        ProvisionError, match=r"host a\.t's ip 10\.2\.0\.1 is not on the network 10\.1\.0\.0/24"
    ):
        plan_addresses(cluster, [], 0, "br0")


def test_every_host_resolves_every_name_and_alias_and_the_coordinators() -> None:
    cluster = Cluster(
        name="c",
        hosts=(
            Host(name="srv1.x.test", ip="10.3.0.5", aliases=("www.x.test",)),
            Host(name="cli1.x.test"),
        ),
        coordinator_aliases=(XRDTEST_MASTER,),
    )
    text = hosts_file(cluster, plan_addresses(cluster, [], 0, "br0"))
    assert "10.3.0.5\tsrv1.x.test srv1 www.x.test\n" in text
    assert "10.3.0.2\tcli1.x.test cli1\n" in text
    assert f"10.3.0.1\t{XRDTEST_MASTER} phalanx-coordinator\n" in text
    assert text.startswith("127.0.0.1\tlocalhost\n")


def test_link_conditions_become_netem_with_tbf_under_it() -> None:
    assert bridge.qdisc_lines("v0", Link(rate=10_000_000)) == [
        "qdisc add dev v0 root handle 2: tbf rate 10000000bit burst 16384 latency 200ms"
    ]
    assert bridge.qdisc_lines("v0", Link(delay=0.02, jitter=0.005, loss=1.0, rate=100_000_000)) == [
        "qdisc add dev v0 root handle 1: netem delay 20ms 5ms loss 1%",
        "qdisc add dev v0 parent 1: handle 2: tbf rate 100000000bit burst 125000 latency 200ms",
    ]


async def test_without_privileges_open_refuses_before_making_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("phalanx.providers.netns.missing_privileges", lambda: "needs root, really")
    provider = NetnsProvider(
        Cluster(name="c", hosts=(Host(name="a.t"),)), tmp_path, "r1", state_dir=tmp_path / "state"
    )
    with pytest.raises(ProvisionError, match="needs root, really"):
        await provider.open()
    assert not (tmp_path / "state").exists()
    await provider.close()


# --- end to end ---------------------------------------------------------------------------


def _subnet() -> ipaddress.IPv4Network:
    """A /24 no route of the machine overlaps (tests of other worktrees run
    beside these, with networks of their own)."""
    routes = json.loads(
        subprocess.run(
            ["ip", "-j", "-4", "route", "show", "table", "all"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    taken = [
        ipaddress.IPv4Network(r["dst"], strict=False)
        for r in routes
        if r.get("dst", "default") != "default"
    ]
    while True:
        candidate = ipaddress.IPv4Network(
            f"10.{random.randrange(64, 128)}.{random.randrange(256)}.0/24"
        )
        if not any(candidate.overlaps(net) for net in taken):
            return candidate


def _repo(
    root: Path, cluster: str, cases: dict[str, dict[str, str]], cluster_file: str = "c.yaml"
) -> Path:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / cluster_file).write_text(textwrap.dedent(cluster))
    suite = root / "test-suites" / "s"
    suite.mkdir(parents=True)
    (suite / "suite.yaml").write_text(
        f"name: s\ncluster: c\ntests: [{', '.join(cases)}]\ntimeout: 60\n"
    )
    for case, stages in cases.items():
        (suite / "tc" / case).mkdir(parents=True)
        for stage, text in stages.items():
            (suite / "tc" / case / stage).write_text(textwrap.dedent(text))
    return root


def _phalanx(
    *args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )


def _start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "phalanx.cli", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=None if env is None else {**os.environ, **env},
    )  # fmt: skip


def _made_by(run_id: str, state: Path = STATE_DIR) -> list[str]:
    """What of a run is still on the machine: namespaces, links, /etc/netns
    folders, its record."""
    mark = label(run_id)
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = json.loads(
        subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout
    )
    left = [line.split()[0] for line in namespaces.splitlines() if f"phx-{run_id}-" in line]
    left += [link["ifname"] for link in links if link["ifname"].startswith(f"phx{mark}")]
    left += [str(p) for p in ETC_NETNS.glob(f"phx-{run_id}-*")] if ETC_NETNS.is_dir() else []
    left += [str(p) for p in state.glob(f"{mark}.json")]
    return left


def _logs(run: Path, case: str, stage: str = "run") -> dict[str, str]:
    return {p.stem: p.read_text() for p in (run / "cases" / case / stage).glob("*.log")}


XRD_CLUSTER = """\
from XrdTest.ClusterUtils import Cluster, Host, Network


def getCluster():
    cluster = Cluster()
    cluster.name = "c"
    net = Network()
    net.bridgeName = "{bridge}"
    net.ip = "{net}.1"
    net.netmask = "255.255.255.0"
    cluster.network = net
    cluster.addHosts([
        Host("srv1.xrd.test", "{net}.11", roles=["server"], aliases=["data1.xrd.test"]),
        Host("srv2.xrd.test", "{net}.12", roles=["server"]),
        Host("cli1.xrd.test", "{net}.21", mac="52:54:00:65:44:67", roles=["client"]),
        Host("cli2.xrd.test", "{net}.22", roles=["client"]),
    ])
    return cluster
"""

WHO_AM_I = """\
#!/bin/bash
echo "hostname=$(hostname)"
echo "fqdn=$(hostname -f)"
echo "HOSTNAME=$HOSTNAME"
echo "address=@address@"
ip -4 -o addr show dev eth0
ip -o link show dev eth0
for name in srv1.xrd.test srv1 data1.xrd.test srv2.xrd.test cli1 cli2.xrd.test master.xrd.test phalanx-coordinator; do
    echo "resolve $name $(getent hosts $name | cut -d' ' -f1)"
done
env | grep '^PHALANX_HOST_' | sort
"""

# Servers i and clients i pair up; both servers listen on one port.
PAIRS = """\
import socket

import phalanx

PORT = 9000


class Pair:
    def __init__(self, config):
        self.config = config
        self.final_results = None

    def run(self):
        me, partner = self.config["hostname"], self.config["match_host"]
        if self.config["role"] == "server":
            with socket.create_server(("0.0.0.0", PORT)) as listener:
                listener.settimeout(30)
                phalanx.send("up-" + me, "1")
                conn, peer = listener.accept()
                with conn:
                    conn.sendall(me.encode())
            self.final_results = {"peer": peer[0]}
        else:
            phalanx.wait("up-" + partner, timeout=30)
            with socket.create_connection((self.config["match_ip"], PORT), timeout=10) as conn:
                answer = conn.recv(100).decode()
                mine = conn.getsockname()[0]
            self.final_results = {"match_ip": self.config["match_ip"], "answer": answer, "mine": mine}
"""


@needs_netns
def test_four_xrdtest_hosts_have_their_own_names_addresses_and_resolve_everyone(
    tmp_path: Path,
) -> None:
    net = str(_subnet().network_address).rsplit(".", 1)[0]
    bridge_name = f"phxt{os.urandom(3).hex()}"
    repo = _repo(
        tmp_path / "repo",
        XRD_CLUSTER.format(net=net, bridge=bridge_name),
        {"who": {"run.sh": WHO_AM_I}},
        "c.py",
    )
    suite = repo / "test-suites" / "s"
    (suite / "pairs.py").write_text(PAIRS)
    (suite / "suite.yaml").write_text(
        textwrap.dedent("""\
        name: s
        cluster: c
        timeout: 60
        tests:
          - who
          - name: pairs
            kind: python
            class: pairs:Pair
            server_client_mode: true
        """)
    )
    done = _phalanx("run", str(repo), "-s", "s", "--provider", "netns", "--plain", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "phalanx-results").iterdir()
    ips = {"srv1": f"{net}.11", "srv2": f"{net}.12", "cli1": f"{net}.21", "cli2": f"{net}.22"}
    logs = _logs(run, "who")
    assert len(logs) == 4
    for host, text in logs.items():
        short = host.split(".")[0]
        # Linux's and XrdTest's convention: the short name, the full one with -f
        # (XrdTest scripts test `[ x$HOSTNAME == xsrv1 ]`).
        assert f"hostname={short}\nfqdn={host}\nHOSTNAME={short}\n" in text
        assert f"inet {ips[short]}/24" in text
        for name, ip in [("srv1.xrd.test", ips["srv1"]), ("srv1", ips["srv1"]), ("data1.xrd.test", ips["srv1"]),
                         ("srv2.xrd.test", ips["srv2"]), ("cli1", ips["cli1"]), ("cli2.xrd.test", ips["cli2"]),
                         ("master.xrd.test", f"{net}.1"), ("phalanx-coordinator", f"{net}.1")]:  # fmt: skip
            assert f"resolve {name} {ip}\n" in text, (host, text)
        assert f"PHALANX_HOST_SRV2={ips['srv2']}\n" in text
        assert f"PHALANX_HOST_DATA1_XRD_TEST={ips['srv1']}\n" in text
    assert "link/ether 52:54:00:65:44:67" in logs["cli1.xrd.test"]
    # Both servers listened on port 9000; each client reached its own partner
    # at its real address, and each server saw its client's.
    results = json.loads((run / "results.json").read_text())
    (pairs,) = [c for c in results["cases"] if c["name"] == "pairs"]
    data = {
        h["host"].split(".")[0]: h["data"]["final_results"]["pairs"]
        for h in pairs["stages"][0]["hosts"]
    }
    for server, client in (("srv1", "cli1"), ("srv2", "cli2")):
        assert data[client] == {
            "match_ip": ips[server],
            "answer": f"{server}.xrd.test",
            "mine": ips[client],
        }
        assert data[server] == {"peer": ips[client]}
    assert _made_by(results["run_id"]) == []
    assert bridge_name not in bridge_links()


def bridge_links() -> list[str]:
    links = json.loads(
        subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout
    )
    return [link["ifname"] for link in links]


@needs_netns
def test_the_netns_example_runs_as_the_readme_says(tmp_path: Path) -> None:
    done = _phalanx("run", str(EXAMPLES), "-s", "netns_lab", "--plain", "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "web2.lab.test:8080 says web2.lab.test" in done.stdout
    (run,) = (tmp_path / "phalanx-results").iterdir()
    assert _made_by(run.name) == []


@needs_netns
def test_the_client_server_example_runs_on_netns_hosts_by_their_own_addresses(
    tmp_path: Path,
) -> None:
    done = _phalanx(
        "run",
        str(EXAMPLES),
        "-s",
        "client_server",
        "--provider",
        "netns",
        "--plain",
        "-v",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "phalanx-results").iterdir()
    fetched = (run / "cases" / "fetch" / "run" / "cli1.phalanx.test.log").read_text()
    assert "fetching http://10." in fetched  # the server's own address, not loopback
    assert "checksum matches" in fetched


RATE_CLUSTER = """\
name: c
hosts:
  - {name: slow.rate.test, link: {rate: 4mbit}}
  - {name: sink.rate.test}
"""

# 1 MB through a 4 Mbit/s link takes 2 s; the sink says how long it took.
RATE_RUN = """\
#!/bin/bash
set -e
if [ "$(hostname -s)" = sink ]; then
    python3 - <<'PY'
import socket, subprocess, time
with socket.create_server(("@address@", 9100)) as listener:
    listener.settimeout(30)
    subprocess.run(["phalanx-send", "listening", "1"], check=True)
    conn, _ = listener.accept()
    started, got = time.monotonic(), 0
    while chunk := conn.recv(65536):
        got += len(chunk)
    print(f"received {got} in {time.monotonic() - started:.2f}")
PY
else
    tc qdisc show dev eth0
    phalanx-wait listening --timeout 30 > /dev/null
    head -c 1000000 /dev/zero | python3 -c '
import socket, sys
with socket.create_connection(("sink.rate.test", 9100), timeout=30) as conn:
    conn.sendall(sys.stdin.buffer.read())
'
fi
"""


@needs_netns
def test_a_links_rate_is_kept_by_tbf(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo", RATE_CLUSTER, {"rate": {"run.sh": RATE_RUN}})
    done = _phalanx("run", str(repo), "-s", "s", "--provider", "netns", "--plain", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "phalanx-results").iterdir()
    logs = _logs(run, "rate")
    assert "tbf 2: root" in logs["slow.rate.test"] and "rate 4Mbit" in logs["slow.rate.test"]
    received = logs["sink.rate.test"].split()
    assert received[:2] == ["received", "1000000"]
    # At most 4 Mbit/s: 2 s; without the limit, a few milliseconds.
    assert float(received[3]) > 1.0, logs


DELAY_CLUSTER = """\
name: c
hosts:
  - {name: far.delay.test, link: {delay: 50ms}}
  - {name: near.delay.test}
"""

DELAY_RUN = """\
#!/bin/bash
set -e
if [ "$(hostname -s)" = near ]; then
    python3 -c '
import socket, subprocess
with socket.create_server(("@address@", 9200)) as listener:
    listener.settimeout(30)
    subprocess.run(["phalanx-send", "listening", "1"], check=True)
    for _ in range(5):
        listener.accept()[0].close()
'
else
    phalanx-wait listening --timeout 30 > /dev/null
    python3 -c '
import socket, time
times = []
for _ in range(5):
    started = time.monotonic()
    socket.create_connection(("near.delay.test", 9200), timeout=10).close()
    times.append(time.monotonic() - started)
print(f"rtt {min(times) * 1000:.1f}")
'
fi
"""


@needs_netns
def test_a_links_delay_is_measured_or_without_netem_is_one_clear_error_naming_the_host(
    tmp_path: Path,
) -> None:
    """With sch_netem, far's 50 ms each way is seen on a round trip; without
    it (this host's kernel), the run is one clear error and leaves nothing.
    The netem side runs in CI inside a VM whose kernel has it
    (test_netem_vm.py)."""
    repo = _repo(tmp_path / "repo", DELAY_CLUSTER, {"delay": {"run.sh": DELAY_RUN}})
    done = _phalanx("run", str(repo), "-s", "s", "--provider", "netns", "--plain", cwd=tmp_path)
    (run,) = (tmp_path / "phalanx-results").iterdir()
    if asyncio.run(bridge.netem_missing()):
        assert done.returncode == 3, done.stdout + done.stderr
        assert (
            "provisioning failed: host far.delay.test's link asks for delay, jitter or loss, and this kernel has no netem qdisc"
            in done.stdout
        )
        assert _made_by(run.name) == []
        return
    assert done.returncode == 0, done.stdout + done.stderr
    rtt = float(_logs(run, "delay")["far.delay.test"].split("rtt ")[1].split()[0])
    # 50 ms each way on far's link.
    assert 90 <= rtt <= 1000


SLEEPER_CLUSTER = """\
name: c
hosts:
  - {name: a.sleep.test}
  - {name: b.sleep.test}
"""

SLEEPER = """\
#!/bin/bash
sleep 300 &
echo $! > "{marks}/$(hostname -f)"
wait
"""


def _sleeping(
    tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], Path, list[int]]:
    """A netns run whose stages sleep, once both hosts are in their stage:
    the run, its folder and the sleepers' pids."""
    marks = tmp_path / "marks"
    marks.mkdir(parents=True)
    repo = _repo(
        tmp_path / "repo", SLEEPER_CLUSTER, {"sleep": {"run.sh": SLEEPER.format(marks=marks)}}
    )
    proc = _start(
        "run", str(repo), "-s", "s", "--provider", "netns", "--plain", cwd=tmp_path, env=env
    )
    run = run_folder(tmp_path, proc)
    wanted = [marks / "a.sleep.test", marks / "b.sleep.test"]
    wait_for(wanted, proc)
    pids = []
    for path in wanted:
        wait_for_text(path)
        pids.append(int(path.read_text()))
    return proc, run, pids


def wait_for_text(path: Path) -> None:
    eventually(lambda: path.read_text().strip(), within=30, what=f"{path} written")


@needs_netns
def test_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    proc, run, pids = _sleeping(tmp_path)
    assert _made_by(run.name) != []
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert _made_by(run.name) == []
    assert all(gone(pid) for pid in pids)


@needs_netns
def test_after_kill_9_phalanx_cleanup_removes_the_runs_leftovers_and_says_so(
    tmp_path: Path,
) -> None:
    # Its own record folder: every netns run that opens sweeps what dead
    # runs left, and one running beside this test must not sweep it first.
    state = tmp_path / "state"
    env = {"PHALANX_NETNS_STATE": str(state)}
    proc, run, pids = _sleeping(tmp_path, env)
    proc.kill()
    proc.communicate(timeout=30)
    left = _made_by(run.name, state)
    assert any(name.startswith(f"phx-{run.name}-") for name in left), left
    assert f"{state}/{label(run.name)}.json" in left
    done = _phalanx("cleanup", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert f"run {run.name}: removed " in done.stdout
    assert f"namespace phx-{run.name}-0" in done.stdout
    assert f"bridge phx{label(run.name)}br" in done.stdout
    assert _made_by(run.name, state) == []
    assert all(gone(pid) for pid in pids)


@needs_netns
def test_after_kill_9_the_next_netns_run_removes_the_leftovers(tmp_path: Path) -> None:
    proc, run, pids = _sleeping(tmp_path / "first")
    proc.kill()
    proc.communicate(timeout=30)
    assert _made_by(run.name) != []
    repo = _repo(tmp_path / "second", SLEEPER_CLUSTER, {"ok": {"run.sh": "#!/bin/bash\ntrue\n"}})
    done = _phalanx(
        "run", str(repo), "-s", "s", "--provider", "netns", "--plain", cwd=tmp_path / "second"
    )
    assert done.returncode == 0, done.stdout
    assert _made_by(run.name) == []
    assert all(gone(pid) for pid in pids)


@needs_netns
def test_a_live_runs_namespaces_are_never_cleaned_up(tmp_path: Path) -> None:
    proc, run, _ = _sleeping(tmp_path)
    try:
        done = _phalanx("cleanup", cwd=tmp_path)
        assert done.returncode == 0
        assert run.name not in done.stdout
        assert any(name.startswith(f"phx-{run.name}-") for name in _made_by(run.name))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert _made_by(run.name) == []


@needs_netns
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv to drop capabilities")
def test_without_net_admin_the_run_errors_at_once_with_one_clear_reason(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo", SLEEPER_CLUSTER, {"ok": {"run.sh": "#!/bin/bash\ntrue\n"}})
    done = subprocess.run(
        ["setpriv", "--inh-caps=-net_admin,-sys_admin", "--bounding-set=-net_admin,-sys_admin",
         sys.executable, "-m", "phalanx.cli", "run", str(repo), "-s", "s", "--provider", "netns", "--plain"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert (
        "provisioning failed: the netns provider makes network namespaces, a bridge and links, "
        "which needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); this process lacks CAP_NET_ADMIN "
        "and CAP_SYS_ADMIN" in " ".join(done.stdout.split())
    )
    (run,) = (tmp_path / "phalanx-results").iterdir()
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "error"
    assert [c["name"] for c in results["cases"]] == ["ok"]
    assert _made_by(run.name) == []


def _served_run(tmp_path: Path, repo: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Suite `s` of `repo` through a `phalanx serve` of its own, followed to
    its end by `phalanx submit --wait` (which must pass): what submit said,
    and the run's folder."""
    from tests.service.test_admin import phalanx as admin_phalanx
    from tests.service.test_serve import start, stop, user_token

    served = start(tmp_path, repo, tmp_path / "data")
    try:
        (tmp_path / "token").write_text(user_token(served, "otto", "operator") + "\n")
        done = admin_phalanx(
            "submit", "s", "--coordinator", served.url, "--token-file", "token", "--wait",
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr + served.log.read_text()
    finally:
        stop(served)
    (run,) = (tmp_path / "data" / "runs").iterdir()
    return done, run


@needs_netns
def test_the_service_runs_a_suite_on_netns_hosts(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path / "defs",
        "name: c\nprovider: netns\nhosts:\n  - {name: a.served.test}\n  - {name: b.served.test}\n",
        {"ping": {"run.sh": "#!/bin/bash\nset -e\n[ \"$(hostname -f)\" = @slavename@ ]\n"
                  "getent hosts b.served.test | grep -q @host:b.served.test@\n"}},
    )  # fmt: skip
    done, run = _served_run(tmp_path, repo)
    assert "ping: passed" in done.stdout
    assert _made_by(run.name) == []


FETCH = """\
#!/bin/bash
url=@proto@://@coordinator@:@port@/showScript/utils/helper.sh
curl -sf "$url"
echo "without the run's capability: $(env -u PHALANX_SCRIPTS_URL curl -s -o /dev/null -w '%{http_code}' "$url")"
"""


@needs_netns
def test_netns_hosts_fetch_suite_files_as_xrdtest_did_with_their_runs_capability(
    tmp_path: Path,
) -> None:
    """On a netns host, the host's address names no one (any process of the
    machine can enter its namespace): XrdTest's unchanged `/showScript`
    fetch works from the run's stages, which hold its capability, and
    another process there without it is refused."""
    repo = _repo(
        tmp_path / "defs", "name: c\nprovider: netns\nhosts:\n  - {name: a.fetch.test}\n",
        {"fetch": {"run.sh": FETCH}},
    )  # fmt: skip
    (repo / "utils").mkdir()
    (repo / "utils" / "helper.sh").write_text("echo a shared helper\n")
    _, run = _served_run(tmp_path, repo)
    output = _logs(run, "fetch")["a.fetch.test"]
    assert "a shared helper" in output, output
    assert "without the run's capability: 403" in output, output


@needs_netns
async def test_a_named_bridge_serves_one_run_at_a_time_and_hosts_are_known_for_faults(
    tmp_path: Path,
) -> None:
    name = f"phxt{os.urandom(3).hex()}"
    cluster = Cluster(
        name="c",
        network=Network(bridge_name=name),
        hosts=(Host(name="a.named.test"), Host(name="b.named.test")),
    )
    first = NetnsProvider(cluster, tmp_path / "1", f"t1-{os.urandom(3).hex()}")
    second = NetnsProvider(cluster, tmp_path / "2", f"t2-{os.urandom(3).hex()}")
    try:
        await first.open()
        assert first.listen_address is not None
        assert first.interface == "eth0"
        assert set(first.namespaces) == {"a.named.test", "b.named.test"}
        assert first.ips == first.addresses(list(cluster.hosts))
        for host, namespace in first.namespaces.items():
            shown = subprocess.run(
                ["ip", "-n", namespace, "-4", "-o", "addr", "show", "dev", "eth0"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            assert f"inet {first.ips[host]}/24" in shown
        with pytest.raises(ProvisionError, match=f"the bridge {name} is in use by run t1-"):
            await second.open()
    finally:
        await second.close()
        await first.close()
    assert name not in bridge_links()
    assert _made_by(first.run_id) == [] and _made_by(second.run_id) == []


@needs_netns
def test_the_bridge_keeps_its_mac_address_as_ports_join(tmp_path: Path) -> None:
    """A host plumbed while others already talk to the coordinator (a
    Docker container's, a VM's tap) must not change the bridge's address:
    a bridge without one takes its lowest port's, and packets to the old
    one were lost for seconds."""
    space = f"phxtest-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", space], check=True, timeout=30)
    try:
        name = "phxtestbr"
        lines = bridge.bridge_lines(name, ipaddress.IPv4Interface("10.99.0.1/24"), make=True)
        lines += ["link add p0 address 00:00:00:00:00:01 type veth peer name q0"]
        lines += [bridge.attach("p0", name)]
        asyncio.run(bridge.ip_batch(lines, netns=space))
        shown = subprocess.run(
            ["ip", "-n", space, "-j", "link", "show", name],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
        assert json.loads(shown)[0]["address"] == bridge.bridge_mac(name)
    finally:
        subprocess.run(["ip", "netns", "del", space], timeout=30)
