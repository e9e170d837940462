"""The hello's labels are optional on the wire both ways."""

from __future__ import annotations

import json

from phalanx.wire.messages import PROTOCOL_VERSION, Hello, encode, parse_agent_message


def test_an_agent_without_labels_sends_the_hello_it_always_sent() -> None:
    sent = json.loads(encode(Hello(version=PROTOCOL_VERSION, host="h1", agent_version="1.0")))
    assert "labels" not in sent  # an older coordinator forbids fields it does not know
    old = '{"type": "hello", "version": %d, "host": "h1", "agent_version": "0.9"}'
    parsed = parse_agent_message(old % PROTOCOL_VERSION)
    assert isinstance(parsed, Hello) and parsed.labels == {}


def test_labels_cross_the_wire() -> None:
    hello = Hello(version=PROTOCOL_VERSION, host="h1", labels={"rack": "r1", "os": "debian"})
    parsed = parse_agent_message(encode(hello))
    assert isinstance(parsed, Hello) and parsed.labels == {"rack": "r1", "os": "debian"}
