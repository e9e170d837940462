"""One coordinator, many runs: runs at once on one hub, on real agent processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from phalanx.coordinator.runs import RunOptions, open_coordinator, run_suite
from phalanx.model import Status
from tests.coordinator.runhelpers import case, output, suite
from tests.eventually import eventually_async

# Both runs: the same barrier names, the same key. The second run's hosts
# start talking only once the first run's server has sent its value, and
# its client asks for the key before its own server sends: had the runs one
# key space, that wait would be answered with the first run's value.
SCRIPT = """
phalanx-sync ready --timeout 30
if [ "@after@" != none ]; then
    for i in $(seq 300); do [ -e "@after@" ] && break; sleep 0.1; done
    [ -e "@after@" ] || { echo "the other run never sent"; exit 1; }
fi
if [ "@role@" = server ]; then
    if [ "@after@" != none ]; then sleep 0.5; fi
    phalanx-send shared "@who@"
    touch "@sent@"
else
    echo "got $(phalanx-wait shared --timeout 30)"
fi
phalanx-sync done --timeout 30
"""


async def test_two_runs_at_once_on_one_coordinator_keep_their_values_apart(tmp_path: Path):
    first_sent, second_sent = tmp_path / "first-sent", tmp_path / "second-sent"
    first = suite(
        case("talk", run=SCRIPT),
        n=2,
        prefix="a",
        tags={"who": "first", "after": "none", "sent": str(first_sent)},
    )
    second = suite(
        case("talk", run=SCRIPT),
        n=2,
        prefix="b",
        tags={"who": "second", "after": str(first_sent), "sent": str(second_sent)},
    )
    async with open_coordinator() as coordinator:
        (one, one_folder), (two, two_folder) = await asyncio.gather(
            run_suite(coordinator, first, RunOptions(results=tmp_path / "r", connect_timeout=30)),
            run_suite(coordinator, second, RunOptions(results=tmp_path / "r", connect_timeout=30)),
        )
        # Nothing of either run is left on the coordinator.
        assert coordinator.hub.holders == {}
        assert coordinator.hub.links == {}
        assert len(coordinator.tokens) == 0
    assert one.status is Status.PASSED, one.reason
    assert two.status is Status.PASSED, two.reason
    assert one.run_id != two.run_id
    assert output(one_folder, one, "talk", "run", "a1.phalanx.test") == "got first\n"
    assert output(two_folder, two, "talk", "run", "b1.phalanx.test") == "got second\n"
    assert first_sent.exists() and second_sent.exists()


async def test_a_run_cannot_take_a_host_another_live_run_holds(tmp_path: Path):
    s = suite(case("c", run="sleep 1"), n=1)
    async with open_coordinator() as coordinator:
        first = asyncio.create_task(
            run_suite(coordinator, s, RunOptions(results=tmp_path, run_id="first"))
        )
        await eventually_async(
            lambda: "h0.phalanx.test" in coordinator.hub.holders,
            within=30,
            what="the first run holds h0",
        )
        try:
            await run_suite(coordinator, s, RunOptions(results=tmp_path, run_id="second"))
        except Exception as exc:
            refused = str(exc)
        else:
            refused = ""
        result, _ = await asyncio.wait_for(first, 30)
    assert refused == "host 'h0.phalanx.test' is held by run 'first'"
    assert result.status is Status.PASSED
