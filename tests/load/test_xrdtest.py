"""Definitions written for XrdTest load unchanged."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from phalanx.load.cluster import load_cluster
from phalanx.load.errors import DefinitionErrors
from phalanx.load.repo import find_suite, load_repo
from phalanx.model import AlertPolicy

EXAMPLES = Path(__file__).parents[2] / "examples" / "repo"


def test_the_example_xrdtest_cluster_keeps_every_attribute() -> None:
    cluster = load_cluster(EXAMPLES / "clusters" / "cluster_xrd.py")
    assert cluster.name == "cluster_xrd"
    assert [h.name for h in cluster.hosts] == [
        "manager1.xrd.test",
        "ds1.xrd.test",
        "client1.xrd.test",
    ]
    ds1 = cluster.host("ds1")
    assert ds1 is not None
    assert ds1.ip == "192.168.127.4"
    assert ds1.mac == "52:54:00:65:44:66"
    assert ds1.aliases == ("data1.xrd.test",)
    # defaultHost fills what a host leaves unset
    assert (ds1.boot_image, ds1.arch, ds1.ram_size) == (
        "slc6_testslave_ref.img",
        "x86_64",
        "1048576",
    )
    (disk,) = ds1.disks
    assert (disk.name, disk.size, disk.device, disk.mount_point) == (
        "disk1",
        20 << 30,
        "vdb",
        "/data",
    )
    assert cluster.network is not None
    assert cluster.network.dhcp_range == ("192.168.127.2", "192.168.127.254")
    assert cluster.network.bridge_name == "virbr_xrd"


def test_the_example_xrdtest_suite_keeps_every_attribute() -> None:
    suite = find_suite(EXAMPLES / "test-suites" / "xrd_copy")
    assert suite.name == "xrd_copy"
    assert suite.cluster.name == "cluster_xrd"
    assert [h.name for h in suite.hosts] == [
        "manager1.xrd.test",
        "ds1.xrd.test",
        "client1.xrd.test",
    ]
    assert [c.name for c in suite.cases] == ["copy_to"]
    assert suite.schedule == {"second": "30", "minute": "08", "hour": "*", "day": "*", "month": "1"}
    assert suite.logs == ("xrd-@slavename@.log",)
    assert suite.alert_emails == ("testers@example.org",)
    assert (suite.alert_success, suite.alert_failure) == (AlertPolicy.NONE, AlertPolicy.CASE)
    assert suite.initialize is not None and "Initializing test suite" in suite.initialize.text
    assert set(suite.cases[0].stages) == {"initialize", "run", "finalize"}


def test_nothing_named_xrdtest_is_left_importable() -> None:
    load_repo(EXAMPLES)
    assert not any(name == "XrdTest" or name.startswith("XrdTest.") for name in sys.modules)


OLD_SUITE = """\
from XrdTest.TestUtils import TestSuite

def getTestSuite():
    ts = TestSuite()
    ts.name = "ts_001_old"
    ts.clusters = ['cluster_old']
    ts.machines = ['srv1']
    ts.tests = ['copy']
    ts.schedule = dict(second='30', minute='08', hour='*', day='*', month='1')
    ts.initialize = "file://suite_init.sh"
    return ts
"""

OLD_CLUSTER = """\
from XrdTest.ClusterUtils import Cluster, Network, Host

def getCluster():
    cluster = Cluster()
    cluster.name = 'cluster_old'
    cluster.network.name = 'net_old'       # the network exists before it is assigned
    cluster.network.ip = '192.168.128.1'
    h1 = Host('srv1.xrd.test', '192.168.128.2', '52:54:00:aa:bb:01')   # MAC third, positionally
    h2 = Host('cli1.xrd.test', '192.168.128.3', net='net_old', ramSize='524288')
    cluster.addHost(h1)
    cluster.addHost(h2)
    return cluster
"""


def test_older_layouts_name_files_after_their_folder(tmp_path: Path) -> None:
    (tmp_path / "clusters" / "cluster_old").mkdir(parents=True)
    (tmp_path / "clusters" / "cluster_old" / "cluster_old.py").write_text(OLD_CLUSTER)
    suite_dir = tmp_path / "test-suites" / "ts_001_old"
    (suite_dir / "tc" / "copy").mkdir(parents=True)
    (suite_dir / "ts_001_old.py").write_text(OLD_SUITE)
    (suite_dir / "suite_init.sh").write_text("echo init\n")
    (suite_dir / "tc" / "copy" / "init.sh").write_text("echo case init\n")
    (suite_dir / "tc" / "copy" / "run.sh").write_text("echo run\n")

    repo = load_repo(tmp_path)
    assert repo.errors == []
    suite = repo.suites["ts_001_old"]
    assert [h.name for h in suite.hosts] == ["srv1.xrd.test"]
    srv1, cli1 = suite.cluster.hosts
    assert srv1.mac == "52:54:00:aa:bb:01"
    assert cli1.mac is None and cli1.ram_size == "524288"
    assert suite.cluster.network is not None and suite.cluster.network.ip == "192.168.128.1"


def test_a_cluster_function_that_raises_names_its_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.py"
    file.write_text(
        "from XrdTest.ClusterUtils import Cluster, Host\n"
        "\n"
        "def getCluster():\n"
        "    c = Cluster('bad')\n"
        "    c.addHost(Host('a', '1.2.3.4', disks=1/0))\n"
        "    return c\n"
    )
    with pytest.raises(DefinitionErrors) as caught:
        load_cluster(file)
    (error,) = caught.value.errors
    assert (error.file, error.line, error.key) == (file, 5, "getCluster")
    assert "ZeroDivisionError" in error.message


def test_a_python_syntax_error_names_its_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.py"
    file.write_text("def getCluster(:\n    pass\n")
    with pytest.raises(DefinitionErrors) as caught:
        load_cluster(file)
    assert caught.value.errors[0].line == 1
    assert "syntax error" in caught.value.errors[0].message


def test_a_file_without_the_function_says_so(tmp_path: Path) -> None:
    file = tmp_path / "empty.py"
    file.write_text("x = 1\n")
    with pytest.raises(DefinitionErrors) as caught:
        load_cluster(file)
    assert "defines no getCluster()" in str(caught.value)
