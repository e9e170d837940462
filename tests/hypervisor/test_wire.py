"""The hypervisor protocol's messages cross as JSON and come back equal;
a cluster crosses as its fields and comes back the same cluster."""

from __future__ import annotations

import pytest

from phalanx.model import Cluster, Disk, Host, Network
from phalanx.wire.hypervisor import (
    HYPERVISOR_PROTOCOL,
    Capacity,
    ClusterClose,
    ClusterDown,
    ClusterOpen,
    ClusterResume,
    ClusterRevert,
    ClusterUp,
    HyperHello,
    HyperPing,
    HyperPong,
    Reply,
    VmSpec,
    VmState,
    cluster_fields,
    cluster_of,
    encode,
    parse_daemon_message,
    parse_hub_message,
)
from phalanx.wire.messages import InvalidMessage

CLUSTER = Cluster(
    name="vms",
    hosts=(
        Host(name="a.vm.test", ram_size="256M", disks=(Disk(name="d1", size=1 << 20),)),
        Host(name="b.vm.test", ip="10.9.0.3", params={"k": [1, "x"]}),
    ),
    network=Network(ip="10.9.0.1", netmask="255.255.255.0"),
    provider="qemu",
    keep=True,
)


def test_daemon_messages_round_trip() -> None:
    capacity = Capacity(cpus=4, ram_mb=8000, kvm=True, accel_reason="KVM works")
    for message in (
        HyperHello(version=HYPERVISOR_PROTOCOL, name="hv1", capacity=capacity, clusters=["k"]),
        Reply(request_id="r1", listen_address="10.9.0.1", addresses={"a": "10.9.0.2"}),
        Reply(request_id="r2", error="no VM image"),
        VmState(cluster="k", host="a.vm.test", state="running", pid=42),
        HyperPong(seq=3),
    ):
        assert parse_daemon_message(encode(message)) == message


def test_hub_messages_round_trip_and_a_cluster_comes_back_the_same() -> None:
    opened = ClusterOpen(
        request_id="r", cluster="k", run_id="run1", definition=cluster_fields(CLUSTER)
    )
    for message in (
        opened,
        ClusterUp(
            request_id="r", cluster="k", vms=[VmSpec(host="a", url="ws://x/agent", token="t")]
        ),
        ClusterDown(request_id="r", cluster="k", lost=["a"]),
        ClusterClose(request_id="r", cluster="k"),
        ClusterRevert(request_id="r", cluster="k"),
        ClusterResume(request_id="r", cluster="k"),
        HyperPing(seq=1),
    ):
        assert parse_hub_message(encode(message)) == message
    back = parse_hub_message(encode(opened))
    assert isinstance(back, ClusterOpen)
    assert cluster_of(back.definition) == CLUSTER  # `source` stays behind: it is None here


def test_an_unknown_type_a_bad_state_and_extra_keys_are_refused() -> None:
    for raw in (
        '{"type": "cluster.format", "request_id": "r"}',
        '{"type": "vm.state", "cluster": "k", "host": "a", "state": "dancing"}',
        '{"type": "pong", "seq": 1, "extra": true}',
    ):
        with pytest.raises(InvalidMessage):
            parse_daemon_message(raw) if "state" in raw or "pong" in raw else parse_hub_message(raw)
    with pytest.raises(InvalidMessage):
        cluster_of({"name": "x", "hosts": "not a list"})
