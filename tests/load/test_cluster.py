"""Cluster definitions: names, addresses and MACs are checked, because they
end up in scripts, host files and network links."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from phalanx.load.cluster import load_cluster
from phalanx.load.errors import DefinitionErrors


def write(tmp_path: Path, text: str, name: str = "lab.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(DefinitionErrors) as caught:
        load_cluster(path)
    return [str(e) for e in caught.value.errors]


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("name", '"a;touch PWNED"', "'a;touch PWNED' is not a host name"),
        ("name", '"with space"', "'with space' is not a host name"),
        ("name", "-lead.example", "is not a host name"),
        ("name", "x" * 64 + ".example", "is not a host name"),
        ("ip", "notanip", "'notanip' is not an IPv4 or IPv6 address"),
        ("ip", "10.0.0.300", "is not an IPv4 or IPv6 address"),
        ("mac", "52:54:00:zz:00:01", "is not a MAC address"),
        ("aliases", '["ok.example", "$(reboot)"]', "'$(reboot)' is not a host name"),
    ],
)
def test_a_bad_host_value_names_file_line_and_key(
    tmp_path: Path, key: str, value: str, says: str
) -> None:
    host = {"name": "h1.example", key: value}
    fields = "\n".join(f"    {k}: {v}" for k, v in host.items())
    path = write(tmp_path, f"name: lab\nhosts:\n  - {fields.strip()}\n")
    (problem,) = problems(path)
    line = 3 if key == "name" else 4
    assert problem.startswith(f"{path}:{line}: hosts.0.{key}: "), problem
    assert says in problem


def test_good_names_and_addresses_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: lab
        network: {ip: 10.9.0.0, netmask: 255.255.255.0, dhcp_range: [10.9.0.10, 10.9.0.20]}
        hosts:
          - {name: srv1.lab.test, ip: 10.9.0.1, mac: "52:54:00:AA:00:01", aliases: [data1]}
          - {name: cli-1, ip: "fd00::2"}
        """,
    )
    cluster = load_cluster(path)
    assert [h.ip for h in cluster.hosts] == ["10.9.0.1", "fd00::2"]
    assert cluster.hosts[0].mac == "52:54:00:aa:00:01"
    assert cluster.network is not None and cluster.network.netmask == "255.255.255.0"


def test_two_hosts_may_not_share_an_ip_a_mac_or_a_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: lab
        hosts:
          - {name: a.test, ip: 10.9.0.1, mac: "52:54:00:00:00:01"}
          - {name: b.test, ip: 10.9.0.1, mac: "52:54:00:00:00:01"}
          - {name: c.test, aliases: [a.test]}
        """,
    )
    found = problems(path)
    assert (
        f"{path}:4: hosts.1.ip: '10.9.0.1' is also a.test's ip; no two hosts may share it" in found
    )
    assert any("hosts.1.mac: '52:54:00:00:00:01' is also a.test's mac" in p for p in found)
    assert f"{path}:5: hosts.2.aliases: alias 'a.test' is host a.test's name" in found
    assert len(found) == 3


def test_hosts_may_share_an_alias_as_a_round_robin_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: lab
        hosts:
          - {name: ds1.test, ip: 10.9.0.1, aliases: [data.test]}
          - {name: ds2.test, ip: 10.9.0.2, aliases: [data.test]}
        """,
    )
    assert [h.aliases for h in load_cluster(path).hosts] == [("data.test",), ("data.test",)]


def test_a_bad_network_address_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "name: lab\nnetwork: {ip: 10.1.1, netmask: 255.0.255.0}\nhosts: [h1]\n")
    found = problems(path)
    assert any("network.ip: '10.1.1' is not an IPv4 or IPv6 address" in p for p in found)
    assert any("network.netmask: '255.0.255.0' is not a netmask" in p for p in found)


def test_an_xrdtest_cluster_with_a_bad_host_name_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        from XrdTest.ClusterUtils import Cluster, Host

        def getCluster():
            cluster = Cluster()
            cluster.name = "lab"
            cluster.addHost(Host("bad;name.xrd.test", "10.1.0.2"))
            return cluster
        """,
        "lab.py",
    )
    (problem,) = problems(path)
    assert "'bad;name.xrd.test' is not a host name" in problem


def test_validate_refuses_an_injected_host_name_before_anything_runs(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "clusters").mkdir(parents=True)
    (repo / "clusters" / "lab.yaml").write_text('name: lab\nhosts:\n  - name: "a;touch PWNED"\n')
    suite = repo / "test-suites" / "s"
    (suite / "tc" / "c").mkdir(parents=True)
    (suite / "suite.yaml").write_text("cluster: lab\ntests: [c]\n")
    (suite / "tc" / "c" / "run.sh").write_text("echo @slavename@\n")
    for command in (["validate", str(repo)], ["run", str(suite), "--results", str(tmp_path)]):
        done = subprocess.run(
            [sys.executable, "-m", "phalanx", *command],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert "lab.yaml:3: hosts.0.name: 'a;touch PWNED' is not a host name" in (
            done.stdout + done.stderr
        )
    assert not (tmp_path / "PWNED").exists()


def test_link_conditions_and_ssh_access_load_in_their_units(tmp_path: Path) -> None:
    cluster = load_cluster(
        write(
            tmp_path,
            """
            provider: netns
            coordinator_aliases: [boss.lab]
            hosts:
              - name: a.lab
                link: {delay: 20ms, jitter: 5ms, loss: 1%, rate: 10mbit}
              - name: b.lab
                ssh: {user: tester, port: 2222, key_file: ~/.ssh/lab, address: 10.9.0.2}
            """,
        )
    )
    a, b = cluster.hosts
    assert cluster.provider == "netns"
    assert cluster.coordinator_aliases == ("boss.lab",)
    assert a.link is not None
    assert (a.link.delay, a.link.jitter, a.link.loss, a.link.rate) == (0.02, 0.005, 1.0, 10**7)
    assert b.ssh is not None
    assert (b.ssh.user, b.ssh.port, b.ssh.key_file, b.ssh.address) == (
        "tester",
        2222,
        "~/.ssh/lab",
        "10.9.0.2",
    )


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("{name: a, link: {delay: soon}}", "must be seconds"),
        ("{name: a, link: {loss: 120%}}", "from 0% to 100%"),
        ("{name: a, link: {rate: fast}}", "must be a rate like 10mbit"),
        ("{name: a, link: {dealy: 20ms}}", "did you mean 'delay'"),
        ("{name: a, ssh: {port: 70000}}", "from 1 to 65535"),
        ("{name: a, ssh: {address: 'x;y'}}", "is not a host name"),
    ],
)
def test_a_bad_link_or_ssh_value_is_named_with_its_line(
    tmp_path: Path, host: str, says: str
) -> None:
    found = problems(write(tmp_path, f"hosts:\n  - {host}\n"))
    assert len(found) == 1, found
    assert "lab.yaml:2" in found[0] and says in found[0], found[0]


def test_an_xrdtest_cluster_names_its_master(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        from XrdTest.ClusterUtils import Cluster, Host

        def getCluster():
            cluster = Cluster()
            cluster.name = "lab"
            host = Host()
            host.name = "srv1.xrd.test"
            host.ip = "192.168.127.3"
            cluster.addHost(host)
            return cluster
        """,
        name="lab.py",
    )
    assert load_cluster(path).coordinator_aliases == ("master.xrd.test",)


def test_vms_may_revert_before_each_case_and_choose_their_root(tmp_path: Path) -> None:
    path = write(tmp_path, "provider: qemu\nrevert: case\nvm_root: disk\nhosts: [a.example]\n")
    cluster = load_cluster(path)
    assert (cluster.revert, cluster.vm_root) == ("case", "disk")
    plain = load_cluster(write(tmp_path, "hosts: [a.example]\n", "plain.yaml"))
    assert (plain.revert, plain.vm_root) == (None, None)


@pytest.mark.parametrize(
    ("text", "line", "key", "says"),
    [
        ("provider: qemu\nrevert: always\n", 2, "revert", "must be one of case"),
        ("provider: qemu\nvm_root: nfs\n", 2, "vm_root", "must be one of host, disk"),
        ("provider: netns\nrevert: case\n", 2, "revert", "only VMs have it (provider: qemu)"),
        ("provider: local\nvm_root: disk\n", 2, "vm_root", "not provider: local"),
        ("revert: case\nvm_root: host\n", 1, "revert", "cannot be snapshotted: vm_root: disk"),
    ],
)
def test_revert_and_vm_root_errors_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, says: str
) -> None:
    path = write(tmp_path, text + "hosts: [a.example]\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:{line}: {key}: "), problem
    assert says in problem


def test_keep_is_a_vm_clusters_true_or_false_with_file_line_and_key(tmp_path: Path) -> None:
    kept = write(tmp_path, "name: vms\nprovider: qemu\nkeep: true\nhosts: [a.t.test]\n")
    assert load_cluster(kept).keep is True
    assert load_cluster(write(tmp_path, "name: x\nhosts: [a.t.test]\n", "x.yaml")).keep is False
    bad = write(tmp_path, "name: vms\nprovider: qemu\nkeep: yes please\nhosts: [a]\n", "b.yaml")
    assert problems(bad) == [f"{bad}:3: keep: must be true or false"]
    local = write(tmp_path, "name: l\nhosts: [a]\nkeep: true\n", "l.yaml")
    assert problems(local) == [
        f"{local}:3: keep: only a cluster of VMs (provider: qemu) is kept up"
    ]


def test_a_vms_vcpus_is_a_whole_number_with_file_line_and_key(tmp_path: Path) -> None:
    good = write(tmp_path, "provider: qemu\nhosts:\n  - {name: a.example, vcpus: 2}\n")
    assert load_cluster(good).hosts[0].vcpus == 2
    assert load_cluster(write(tmp_path, "hosts: [a.example]\n", "one.yaml")).hosts[0].vcpus is None
    for bad in ("0", "two", "1.5", "true"):
        path = write(tmp_path, f"hosts:\n  - {{name: a.example, vcpus: {bad}}}\n", "bad.yaml")
        assert problems(path) == [
            f"{path}:2: hosts.0.vcpus: must be a whole number of virtual CPUs from 1 to 255"
        ], bad
