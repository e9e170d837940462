"""Cluster definitions: `clusters/<name>.yaml`, or `<name>.py` with
`getCluster()` (XrdTest), into a `Cluster`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from phalanx.load import fields, netaddr, pydef, yamlsrc
from phalanx.load.errors import DefinitionErrors, Problems
from phalanx.load.fields import FieldError
from phalanx.load.xrdtest import Cluster as XrdCluster
from phalanx.model import (
    PROVIDER_PODMAN,
    PROVIDER_QEMU,
    PROVIDERS,
    REVERTS,
    VM_ROOTS,
    XRDTEST_MASTER,
    Cluster,
    Disk,
    Host,
    Link,
    Network,
    SshAccess,
)
from phalanx.plugins import PluginError, UnknownPlugin

CLUSTER_KEYS = {
    "name",
    "description",
    "hosts",
    "network",
    "provider",
    "coordinator_aliases",
    "revert",
    "vm_root",
    "keep",
    "image",
    "compose",
}
# YAML takes snake_case; XrdTest's camelCase is accepted too.
HOST_KEYS = {
    "name": "name",
    "ip": "ip",
    "roles": "roles",
    "mac": "mac",
    "aliases": "aliases",
    "ram_size": "ram_size",
    "ramSize": "ram_size",
    "vcpus": "vcpus",
    "cpus": "vcpus",  # a container's --cpus
    "arch": "arch",
    "boot_image": "boot_image",
    "bootImage": "boot_image",
    "disks": "disks",
    "params": "params",
    "link": "link",
    "ssh": "ssh",
    "image": "image",
}
LINK_KEYS = {"delay", "jitter", "loss", "rate"}
SSH_KEYS = {"user", "port", "address", "key_file", "known_hosts"}
DISK_KEYS = {"name", "size", "device", "mount_point", "mountPoint", "cache"}
NETWORK_KEYS = {
    "name": "name",
    "ip": "ip",
    "netmask": "netmask",
    "dhcp_range": "dhcp_range",
    "DHCPRange": "dhcp_range",
    "bridge_name": "bridge_name",
    "bridgeName": "bridge_name",
}


def load_cluster(file: Path) -> Cluster:
    """The cluster a `.yaml`/`.yml` or `.py` file defines; DefinitionErrors otherwise."""
    if file.suffix == ".py":
        return from_python(file)
    return from_yaml(yamlsrc.read(file))


def from_yaml(src: yamlsrc.Source) -> Cluster:
    problems = Problems(src.file)
    data = src.data
    if not isinstance(data, dict):
        problems.add("a cluster file must be a mapping with `name` and `hosts`", line=src.line())
        problems.raise_if_any()
    for key in data:
        if key not in CLUSTER_KEYS:
            problems.errors.append(src.error(fields.unknown_key(key, CLUSTER_KEYS), key))
    name = data.get("name", src.file.stem)
    try:
        fields.segment(name)
    except fields.FieldError as exc:
        problems.errors.append(src.error(str(exc), "name"))
    hosts: list[Host] = []
    raw_hosts = data.get("hosts")
    unhonoured: tuple[str, ...] = ()
    if data.get("compose") is not None:
        composed, unhonoured = _composed(src, data["compose"], raw_hosts, problems)
        hosts.extend(composed)
    elif raw_hosts is None:
        problems.errors.append(src.error("missing: a cluster needs `hosts`", "hosts"))
    elif not isinstance(raw_hosts, list) or not raw_hosts:
        problems.errors.append(src.error("must be a non-empty list of hosts", "hosts"))
    else:
        for index, raw in enumerate(raw_hosts):
            host = _yaml_host(src, raw, index, problems)
            if host is not None:
                hosts.append(host)
    network = None
    if data.get("network") is not None:
        network = _network(
            data["network"],
            problems,
            lambda k: src.line("network", k) if k else src.line("network"),
        )
    _check_unique(hosts, problems, lambda i: src.line("hosts", i))
    provider = data.get("provider")
    if provider is None and data.get("compose") is not None:
        provider = PROVIDER_PODMAN
    if provider is not None:
        problem = provider_problem(provider)
        if problem is not None:
            problems.errors.append(src.error(problem, "provider"))
    aliases: tuple[str, ...] = ()
    if data.get("coordinator_aliases") is not None:
        try:
            aliases = tuple(netaddr.hostname(a) for a in fields.names(data["coordinator_aliases"]))
        except FieldError as exc:
            problems.errors.append(src.error(str(exc), "coordinator_aliases"))
    revert, vm_root = _vm_choices(src, data, provider, problems)
    keep = data.get("keep", False)
    if not isinstance(keep, bool):
        problems.errors.append(src.error("must be true or false", "keep"))
        keep = False
    elif keep and provider != PROVIDER_QEMU:
        problems.errors.append(
            src.error(f"only a cluster of VMs (provider: {PROVIDER_QEMU}) is kept up", "keep")
        )
    image = data.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        problems.errors.append(src.error("must be an image name", "image"))
        image = None
    problems.raise_if_any()
    return Cluster(
        name=str(name),
        hosts=tuple(hosts),
        network=network,
        source=src.file,
        provider=provider,
        coordinator_aliases=aliases,
        revert=revert,
        vm_root=vm_root,
        keep=keep,
        image=image,
        unhonoured=unhonoured,
    )


def provider_problem(name: object) -> str | None:
    """Why `name` is not an installed provider's; None: it is."""
    if not isinstance(name, str):
        return "must be a provider's name"
    try:
        PROVIDERS.entry(name)
    except (UnknownPlugin, PluginError) as exc:
        return str(exc)
    return None


def _composed(
    src: yamlsrc.Source, value: Any, raw_hosts: Any, problems: Problems
) -> tuple[list[Host], tuple[str, ...]]:
    """The hosts of the compose file a cluster names (relative to the
    cluster file), and the compose keys phalanx does not honour."""
    from phalanx.load.compose import load_compose

    if raw_hosts is not None:
        problems.errors.append(
            src.error("a cluster of a compose file has no `hosts` of its own", "hosts")
        )
    if not isinstance(value, str) or not value:
        problems.errors.append(src.error("must be the path of a compose file", "compose"))
        return [], ()
    file = (src.file.parent / value).resolve()
    if not file.is_file():
        problems.errors.append(src.error(f"no compose file {file}", "compose"))
        return [], ()
    try:
        hosts, unhonoured = load_compose(file)
    except DefinitionErrors as exc:
        problems.extend(exc.errors)
        return [], ()
    return list(hosts), unhonoured


def _vm_choices(
    src: yamlsrc.Source, data: dict[str, Any], provider: Any, problems: Problems
) -> tuple[str | None, str | None]:
    """`revert:` and `vm_root:`, which only VMs have, and which go together:
    a VM reverts to snapshots only with a root disk of its own."""
    revert, vm_root = data.get("revert"), data.get("vm_root")
    if revert is not None and revert not in REVERTS:
        problems.errors.append(src.error(f"must be one of {', '.join(REVERTS)}", "revert"))
    if vm_root is not None and vm_root not in VM_ROOTS:
        problems.errors.append(src.error(f"must be one of {', '.join(VM_ROOTS)}", "vm_root"))
    for key in ("revert", "vm_root"):
        if data.get(key) is not None and provider not in (None, PROVIDER_QEMU):
            problems.errors.append(
                src.error(f"only VMs have it (provider: qemu), not provider: {provider}", key)
            )
    if revert is not None and vm_root == "host":
        problems.errors.append(
            src.error(
                "a VM whose root is this machine's (over 9p) cannot be snapshotted: "
                "vm_root: disk, or leave vm_root out",
                "revert",
            )
        )
    return (
        revert if isinstance(revert, str) else None,
        vm_root if isinstance(vm_root, str) else None,
    )


def _yaml_host(src: yamlsrc.Source, raw: Any, index: int, problems: Problems) -> Host | None:
    at = ("hosts", index)
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        problems.errors.append(src.error("a host is a name or a mapping with `name`", *at))
        return None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        field = HOST_KEYS.get(key)
        if field is None:
            problems.errors.append(
                src.error(fields.unknown_key(key, HOST_KEYS, "host key"), *at, key)
            )
            continue
        try:
            values[field] = _host_field(field, value)
        except FieldError as exc:
            problems.errors.append(src.error(str(exc), *at, key))
    if "name" in raw and "name" not in values:
        return None  # said above: the name is not a host name
    if not values.get("name"):
        problems.errors.append(src.error("missing: every host needs a `name`", *at))
        return None
    if "disks" in values:
        disks = []
        for d_index, disk in enumerate(values["disks"]):
            try:
                disks.append(_disk(disk))
            except FieldError as exc:
                problems.errors.append(src.error(str(exc), *at, "disks", d_index))
        values["disks"] = tuple(disks)
    return Host(**values)


def _host_field(field: str, value: Any) -> Any:
    if field == "roles":
        return fields.names(value)
    if field == "aliases":
        return tuple(netaddr.hostname(a) for a in fields.names(value))
    if field == "params":
        return fields.mapping(value)
    if field == "disks":
        if not isinstance(value, list):
            raise FieldError("must be a list of disks")
        return value
    if field == "link":
        return _link(value)
    if field == "ssh":
        return _ssh(value)
    if field == "vcpus":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 255:
            raise FieldError("must be a whole number of virtual CPUs from 1 to 255")
        return value
    if value is None:
        return None
    text = fields.text(value)
    check = _ADDRESS_FIELDS.get(field)
    return check(text) if check is not None else text


_ADDRESS_FIELDS = {"name": netaddr.hostname, "ip": netaddr.ip, "mac": netaddr.mac}
_NETWORK_ADDRESSES = {"ip": netaddr.ip, "netmask": netaddr.netmask}


def _checked_mapping(raw: Any, known: set[str], what: str, shape: str) -> dict[str, Any]:
    """`raw` as a mapping of `known` keys only; `shape` says what one looks like."""
    if not isinstance(raw, dict):
        raise FieldError(shape)
    unknown = set(raw) - known
    if unknown:
        raise FieldError(fields.unknown_key(min(unknown, key=str), known, what))
    return raw


def _link(raw: Any) -> Link:
    raw = _checked_mapping(
        raw,
        LINK_KEYS,
        "link key",
        "must be a mapping like {delay: 20ms, jitter: 5ms, loss: 1%, rate: 10mbit}",
    )
    return Link(
        delay=fields.seconds(raw["delay"]) if raw.get("delay") is not None else None,
        jitter=fields.seconds(raw["jitter"]) if raw.get("jitter") is not None else None,
        loss=fields.percent(raw["loss"]) if raw.get("loss") is not None else None,
        rate=fields.bitrate(raw["rate"]) if raw.get("rate") is not None else None,
    )


def _ssh(raw: Any) -> SshAccess:
    if raw is None:
        return SshAccess()
    raw = _checked_mapping(
        raw,
        SSH_KEYS,
        "ssh key",
        "must be a mapping like {user: test, port: 22, key_file: ~/.ssh/id_ed25519}",
    )
    port = raw.get("port", 22)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise FieldError(f"ssh port must be a number from 1 to 65535, not {port!r}")
    address = raw.get("address")
    if address is not None:
        text = fields.text(address)
        address = netaddr.ip(text) if text[:1].isdigit() else netaddr.hostname(text)

    def optional(key: str) -> str | None:
        return fields.text(raw[key]) if raw.get(key) is not None else None

    return SshAccess(
        user=optional("user"),
        port=port,
        address=address,
        key_file=optional("key_file"),
        known_hosts=optional("known_hosts"),
    )


def _disk(raw: Any) -> Disk:
    raw = _checked_mapping(raw, DISK_KEYS, "disk key", "a disk is a mapping with `name` and `size`")
    if "name" not in raw or "size" not in raw:
        raise FieldError("a disk needs `name` and `size`")
    return Disk(
        name=fields.text(raw["name"]),
        size=fields.size(raw["size"]),
        device=fields.text(raw.get("device", "vda")),
        mount_point=fields.text(raw.get("mount_point", raw.get("mountPoint", "/data"))),
        cache=bool(raw.get("cache", True)),
    )


def _network(
    raw: Any, problems: Problems, line: Callable[[str | None], int | None]
) -> Network | None:
    if not isinstance(raw, dict):
        problems.add("must be a mapping", "network", line(None))
        return None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        field = NETWORK_KEYS.get(key)
        if field is None:
            message = fields.unknown_key(key, NETWORK_KEYS, "network key")
            problems.add(message, f"network.{key}", line(key))
        elif value is None:
            continue
        elif field == "dhcp_range":
            if not isinstance(value, list | tuple) or len(value) != 2:
                problems.add(
                    "must be a pair of addresses [first, last]", f"network.{key}", line(key)
                )
            else:
                try:
                    values[field] = (netaddr.ip(str(value[0])), netaddr.ip(str(value[1])))
                except FieldError as exc:
                    problems.add(str(exc), f"network.{key}", line(key))
        elif field in _NETWORK_ADDRESSES:
            try:
                values[field] = _NETWORK_ADDRESSES[field](str(value))
            except FieldError as exc:
                problems.add(str(exc), f"network.{key}", line(key))
        else:
            values[field] = str(value)
    return Network(**values)


def _check_unique(hosts: list[Host], problems: Problems, line: Callable[[int], int | None]) -> None:
    """No two hosts share a name, an IP or a MAC, and no alias is another
    host's name: each would make one host unreachable, or two hosts answer
    as one. Hosts may share an alias (a round-robin name, as XrdTest
    clusters give several data servers one)."""
    names = {h.name.lower(): h.name for h in hosts}
    for index, host in enumerate(hosts):
        for alias in host.aliases:
            owner = names.get(alias.lower())
            if owner is not None and owner != host.name:
                message = f"alias {alias!r} is host {owner}'s name"
                problems.add(message, f"hosts.{index}.aliases", line(index))
    seen: dict[tuple[str, str], str] = {}
    for index, host in enumerate(hosts):
        values = [("name", host.name.lower())]
        values += [(key, v) for key, v in (("ip", host.ip), ("mac", host.mac)) if v]
        for key, value in values:
            owner = seen.get((key, value))
            if owner is None:
                seen[(key, value)] = host.name
            elif key == "name":
                problems.add(f"host {value!r} is defined twice", f"hosts.{index}", line(index))
            else:
                problems.add(
                    f"{value!r} is also {owner}'s {key}; no two hosts may share it",
                    f"hosts.{index}.{key}",
                    line(index),
                )


# --- XrdTest getCluster() -----------------------------------------------------


def from_python(file: Path) -> Cluster:
    called = pydef.call(file, "getCluster")
    made, lines = called.value, called.lines
    problems = Problems(file)
    if not isinstance(made, XrdCluster):
        problems.add(f"getCluster() must return a Cluster, not {type(made).__name__}", "getCluster")
        problems.raise_if_any()
    name = made.name or file.stem
    try:
        fields.segment(name)
    except fields.FieldError as exc:
        problems.add(str(exc), "name", lines.get("name"))
    default = made.defaultHost
    hosts: list[Host] = []
    for index, raw in enumerate(made.hosts):
        if not raw.name:
            problems.add(f"host {index + 1} has no name", "hosts", lines.get("hosts"))
            continue
        try:
            disks = tuple(
                _disk(
                    {
                        "name": d.name,
                        "size": d.size,
                        "device": d.device,
                        "mount_point": d.mountPoint,
                        "cache": d.cache,
                    }
                )
                for d in raw.disks
            )
        except FieldError as exc:
            problems.add(str(exc), f"{raw.name}.disks", lines.get("disks"))
            disks = ()
        try:
            name_, ip_, mac_ = (
                netaddr.hostname(raw.name),
                netaddr.ip(raw.ip) if raw.ip else None,
                netaddr.mac(raw.mac) if raw.mac else None,
            )
            aliases = tuple(netaddr.hostname(a) for a in raw.aliases)
        except FieldError as exc:
            problems.add(str(exc), f"hosts.{raw.name}", lines.get("hosts"))
            continue
        hosts.append(
            Host(
                name=name_,
                ip=ip_,
                roles=tuple(raw.roles),
                mac=mac_,
                aliases=aliases,
                ram_size=_opt(raw.ramSize or default.ramSize),
                arch=_opt(raw.arch or default.arch),
                boot_image=_opt(raw.bootImage or default.bootImage),
                disks=disks,
                params=dict(raw.params),
            )
        )
    if not hosts and not problems:
        problems.add(
            "the cluster has no hosts; call addHost() or addHosts()",
            "hosts",
            lines.get("hosts"),
        )
    network = None
    net = made._network
    if net is not None:
        network = Network(
            name=net.name,
            ip=net.ip,
            netmask=net.netmask,
            dhcp_range=tuple(net.DHCPRange) if net.DHCPRange else None,
            bridge_name=net.bridgeName,
        )
    _check_unique(hosts, problems, lambda _i: None)
    problems.raise_if_any()
    return Cluster(
        name=str(name),
        hosts=tuple(hosts),
        network=network,
        source=file,
        coordinator_aliases=(XRDTEST_MASTER,),
    )


def _opt(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
