"""What an agent or a hypervisor daemon says about itself is bounded: a hello
with megabytes of labels is refused over a real WebSocket, with the reason,
and nothing of it is kept; names with a trailing newline are not names."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from phalanx.coordinator.agents import CLOSE_REFUSED
from phalanx.coordinator.runs import open_coordinator
from phalanx.load.errors import DefinitionErrors
from phalanx.load.fields import FieldError
from phalanx.load.netaddr import hostname, mac
from phalanx.service.ca import CAError, init_ca, issue
from phalanx.wire.hypervisor import HyperHello, parse_daemon_message
from phalanx.wire.messages import (
    MAX_LABELS,
    PROTOCOL_VERSION,
    Hello,
    InvalidMessage,
    parse_agent_message,
)

HOST = "h1.bounds.test"


def hello(**fields: object) -> str:
    return json.dumps({"type": "hello", "version": PROTOCOL_VERSION, "host": HOST, **fields})


@pytest.mark.parametrize(
    "fields",
    [
        {"labels": {f"k{i}": "v" * 1000 for i in range(10_000)}},  # ~10 MB, as in the issue
        {"labels": {f"k{i}": "v" for i in range(MAX_LABELS + 1)}},
        {"labels": {"rack": "r" * 257}},
        {"labels": {"k" * 65: "v"}},
        {"agent_version": "1." + "0" * 100},
        {"host": "h" * 254},
    ],
    ids=["10MB", "too-many", "long-value", "long-key", "long-version", "long-host"],
)
def test_an_oversized_hello_does_not_parse(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidMessage):
        parse_agent_message(hello(**fields))


def test_a_hello_within_the_bounds_parses() -> None:
    labels = {f"k{i}": "v" * 256 for i in range(MAX_LABELS)}
    parsed = parse_agent_message(hello(labels=labels, agent_version="0.1.0"))
    assert isinstance(parsed, Hello) and parsed.labels == labels


def test_a_hypervisor_hello_is_bounded_too() -> None:
    capacity = {"cpus": 2, "ram_mb": 1024, "kvm": False}
    base = {"type": "hyper.hello", "version": 1, "name": "hv1", "capacity": capacity}
    assert isinstance(parse_daemon_message(json.dumps(base)), HyperHello)
    for extra in (
        {"name": "h" * 254},
        {"phalanx_version": "x" * 65},
        {"clusters": ["k"] * 1025},
        {"capacity": {**capacity, "accel_reason": "r" * 2000}},
    ):
        with pytest.raises(InvalidMessage):
            parse_daemon_message(json.dumps({**base, **extra}))


async def test_a_10mb_hello_is_refused_on_the_wire_and_nothing_is_kept() -> None:
    async with open_coordinator(heartbeat_timeout=5) as coordinator:
        token = coordinator.tokens.issue(HOST)
        huge = hello(labels={f"k{i}": "v" * 1000 for i in range(10_000)})

        def send() -> tuple[int | None, str]:
            headers = {"Authorization": f"Bearer {token}"}
            with connect(coordinator.agent_url, additional_headers=headers, max_size=None) as ws:
                ws.send(huge)
                try:
                    ws.recv(timeout=10)
                except ConnectionClosed as closed:
                    received = closed.rcvd
                    return (received.code, received.reason) if received else (None, "")
            return None, "not closed"

        code, reason = await asyncio.wait_for(asyncio.to_thread(send), 30)
        assert code == CLOSE_REFUSED
        assert "labels" in reason
        link = coordinator.hub.links.get(HOST)
        assert link is None or (link.labels == {} and link.connection is None)


@pytest.mark.parametrize("name", ["srv1.test\n", "srv1\n.test", "srv1.test\n\n"])
def test_a_host_name_with_a_newline_is_not_a_host_name(name: str) -> None:
    with pytest.raises(FieldError):
        hostname(name)


def test_a_cluster_host_named_with_a_trailing_newline_is_a_definition_error(
    tmp_path: Path,
) -> None:
    from phalanx.load.cluster import load_cluster

    file = tmp_path / "c.yaml"
    # A YAML block scalar keeps its final newline: the way one gets in.
    file.write_text("name: c\nhosts:\n  - name: |\n      srv1.test\n")
    with pytest.raises(DefinitionErrors) as caught:
        load_cluster(file)
    assert any("not a host name" in e.message for e in caught.value.errors)


def test_a_mac_still_accepts_surrounding_space_but_nothing_after() -> None:
    assert mac(" 52:54:00:12:34:56 ") == "52:54:00:12:34:56"
    with pytest.raises(FieldError):
        mac("52:54:00:12:34:56:78")


def test_a_certificate_name_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca")
    with pytest.raises(CAError):
        issue(tmp_path / "ca", "srv1\n", out=tmp_path / "certs")
    with pytest.raises(CAError):
        issue(tmp_path / "ca", "srv1", dns=["srv1.test\n"], out=tmp_path / "certs")


def test_the_agent_command_refuses_labels_the_coordinator_would(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.host", "--coordinator", "ws://127.0.0.1:9/agent",
         "--name", HOST, "--label", "rack=" + "r" * 300],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "at most 256" in done.stderr
