"""The names an XrdTest definition file imports, provided while it runs.

Files written for XrdTest do `from XrdTest.TestUtils import TestSuite` and
`from XrdTest.ClusterUtils import Cluster, Host, Network, Disk`. These
stand-ins record what the file sets; `phalanx.load.suite` and
`phalanx.load.cluster` turn the records into model objects. The modules
exist in `sys.modules` only while a definition file executes, so nothing
named `XrdTest` is ever installed.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


class TestSuite:
    """What `getTestSuite()` returns: attributes only, as XrdTest users set them."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.descName: str | None = None
        self.clusters: list[str] | str = []
        self.machines: list[str] = []
        self.tests: list[Any] = []
        self.schedule: dict[str, Any] | str | None = None
        self.initialize: str | None = None
        self.finalize: str | None = None
        self.logs: list[str] = []
        self.alert_emails: list[str] = []
        self.alert_success = "SUITE"
        self.alert_failure = "CASE"


class TestCase:
    __test__ = False

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.initialize: str | None = None
        self.run: str | None = None
        self.finalize: str | None = None


class Disk:
    def __init__(
        self,
        name: str,
        size: str | int,
        device: str = "vda",
        mountPoint: str = "/data",
        cache: bool = True,
    ) -> None:
        self.name = name
        self.size = size
        self.device = device
        self.mountPoint = mountPoint
        self.cache = cache


class Network:
    def __init__(
        self,
        name: str | None = None,
        ip: str | None = None,
        netmask: str | None = None,
        DHCPRange: tuple[str, str] | None = None,
        bridgeName: str | None = None,
    ) -> None:
        self.name = name
        self.ip = ip
        self.netmask = netmask
        self.DHCPRange = DHCPRange
        self.bridgeName = bridgeName
        self.hosts: list[Any] = []

    # XrdTest fills libvirt's DHCP and DNS tables with these; phalanx's
    # providers read the cluster's hosts instead, so recording is enough.
    def addHost(self, host: Any) -> None:
        self.hosts.append(host)

    def addHosts(self, hosts: Iterable[Any]) -> None:
        self.hosts.extend(hosts)

    addDhcpHost = addHost
    addDnsHost = addHost


class Host:
    """Both signatures seen in the wild: the documented one (`name, ip, net,
    ramSize, ...`) and the one real files use (`name, ip, mac, aliases, ...`).
    A third positional argument that looks like a MAC address is the MAC."""

    def __init__(
        self,
        name: str = "",
        ip: str = "",
        mac_or_net: str | None = None,
        aliases: Iterable[str] | None = None,
        ramSize: str | None = None,
        arch: str | None = None,
        bootImage: str | None = None,
        cacheBootImage: bool | None = None,
        net: str | None = None,
        emulatorPath: str | None = None,
        uuid: str | None = None,
        mac: str | None = None,
        roles: Iterable[str] | None = None,
        **params: Any,
    ) -> None:
        if mac_or_net is not None:
            if _MAC.fullmatch(str(mac_or_net)):
                mac = mac or mac_or_net
            else:
                net = net or mac_or_net
        self.name = name
        self.ip = ip
        self.mac = mac
        self.aliases = list(aliases or [])
        self.ramSize = ramSize
        self.arch = arch
        self.bootImage = bootImage
        self.cacheBootImage = cacheBootImage
        self.net = net
        self.emulatorPath = emulatorPath
        self.uuid = uuid
        self.roles = list(roles or [])
        self.disks: list[Disk] = []
        self.params = params


class Cluster:
    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.hosts: list[Host] = []
        self._network: Network | None = None
        self.defaultHost = Host()
        self.emulatorPath: str | None = None

    def networkGet(self) -> Network:
        if self._network is None:
            self._network = Network()
        return self._network

    def networkSet(self, net: Network) -> None:
        self._network = net

    network = property(networkGet, networkSet)

    def addHost(self, host: Host) -> None:
        self.hosts.append(host)

    def addHosts(self, hosts: Iterable[Host]) -> None:
        self.hosts.extend(hosts)

    def setEmulatorPath(self, emulator_path: str) -> None:
        self.emulatorPath = emulator_path


class TestSuiteException(Exception):
    __test__ = False


class ClusterManagerException(Exception):
    pass


def _modules() -> dict[str, types.ModuleType]:
    package = types.ModuleType("XrdTest", "Provided by phalanx while a definition file runs.")
    package.__path__ = []
    test_utils = types.ModuleType("XrdTest.TestUtils")
    cluster_utils = types.ModuleType("XrdTest.ClusterUtils")
    for name, value in {
        "TestSuite": TestSuite,
        "TestCase": TestCase,
        "TestSuiteException": TestSuiteException,
    }.items():
        setattr(test_utils, name, value)
    for name, value in {
        "Cluster": Cluster,
        "Host": Host,
        "Network": Network,
        "Disk": Disk,
        "ClusterManagerException": ClusterManagerException,
    }.items():
        setattr(cluster_utils, name, value)
    package.TestUtils = test_utils  # type: ignore[attr-defined]
    package.ClusterUtils = cluster_utils  # type: ignore[attr-defined]
    return {
        "XrdTest": package,
        "XrdTest.TestUtils": test_utils,
        "XrdTest.ClusterUtils": cluster_utils,
    }


@contextmanager
def provided() -> Iterator[None]:
    """`XrdTest`, `XrdTest.TestUtils` and `XrdTest.ClusterUtils` importable,
    for the duration of the block; whatever was there before comes back."""
    modules = _modules()
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
