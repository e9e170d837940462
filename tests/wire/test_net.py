"""`net.fault` and `net.done` on the wire, and `phalanx-net`'s own checks:
each action crosses with exactly its fields, anything else is refused with
a reason; bad arguments are a usage error (exit 2) before any agent is
asked."""

from __future__ import annotations

import pytest

from phalanx.host.daemon import _invalid, _net_fault
from phalanx.host.netclient import main, parse_delay, parse_group
from phalanx.host.syncclient import EXIT_USAGE
from phalanx.wire.messages import (
    InvalidMessage,
    NetDone,
    NetFault,
    encode,
    parse_agent_message,
    parse_coordinator_message,
)

FAULTS = [
    NetFault(request_id="r1", stage_id="s", action="partition", groups=[["a", "b"], ["c"]]),
    NetFault(request_id="r2", stage_id="s", action="isolate", host="a"),
    NetFault(request_id="r3", stage_id="s", action="slow", host="a", delay=0.2),
    NetFault(request_id="r4", stage_id="s", action="heal"),
]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.action)
def test_a_fault_crosses_the_wire_as_it_was(fault: NetFault) -> None:
    assert parse_agent_message(encode(fault)) == fault


@pytest.mark.parametrize("error", [None, "no host 'zz' in this run"])
def test_the_answer_crosses_the_wire_as_it_was(error: str | None) -> None:
    done = NetDone(request_id="r1", error=error)
    assert parse_coordinator_message(encode(done)) == done


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"action": "slow", "host": "a"}, "net.fault slow takes delay, host"),
        ({"action": "heal", "host": "a"}, "net.fault heal takes nothing else"),
        ({"action": "isolate", "groups": [["a"]]}, "net.fault isolate takes host"),
        ({"action": "partition", "groups": [["a"], []]}, "a group is empty"),
        ({"action": "slow", "host": "a", "delay": -1}, "not between 0 and an hour"),
        ({"action": "reboot"}, "Invalid enum value 'reboot' - at `$.action`"),
    ],
)
def test_a_request_that_is_not_a_fault_is_refused_with_why(
    fields: dict[str, object], says: str
) -> None:
    with pytest.raises(InvalidMessage) as refused:
        _net_fault("r", "s", {"op": "net", **fields})
    assert says in _invalid(refused.value)


def test_an_unknown_field_is_refused_on_the_wire() -> None:
    raw = encode(FAULTS[3]).replace('"action"', '"force":true,"action"')
    with pytest.raises(InvalidMessage):
        parse_agent_message(raw)


def test_delays_and_groups_read_as_a_person_writes_them() -> None:
    assert parse_delay("200ms") == pytest.approx(0.2)
    assert parse_delay("1.5s") == 1.5
    assert parse_delay("300us") == pytest.approx(0.0003)
    assert parse_delay(0.25) == 0.25
    for bad in ("200", "fast", "-1s", "2h", True):
        with pytest.raises(ValueError):
            parse_delay(bad)
    assert parse_group("a, b.x.test") == ["a", "b.x.test"]
    with pytest.raises(ValueError, match="names joined by commas"):
        parse_group("a,,b")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["reboot"],
        ["isolate"],
        ["isolate", "a", "b"],
        ["partition"],
        ["slow", "a"],
        ["heal", "x"],
    ],
)
def test_bad_arguments_are_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PHALANX_AGENT_SOCKET", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == EXIT_USAGE
    assert "usage: phalanx-net" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["slow", "a", "200"], ["partition", "a,,b"]])
def test_bad_values_are_a_usage_error_that_says_which(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PHALANX_AGENT_SOCKET", raising=False)
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "usage: phalanx-net" in err
    assert repr(argv[-1]) in err


def test_outside_a_stage_it_says_there_is_no_agent(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PHALANX_AGENT_SOCKET", raising=False)
    assert main(["heal"]) == 3
    assert "not inside a phalanx stage" in capsys.readouterr().err
