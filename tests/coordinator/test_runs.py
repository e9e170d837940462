"""The lifecycle of DESIGN §2, on real agent processes."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

from phalanx.model import Status
from tests.coordinator.runhelpers import case, output, run, suite
from tests.processes import alive

JITTER = "sleep 0.$((RANDOM % 3))"


def test_no_host_starts_a_stage_before_every_host_ended_the_previous(tmp_path: Path):
    s = suite(
        *(case(f"c{i}", init=JITTER, run=JITTER, fin=JITTER) for i in range(3)),
        initialize=JITTER,
        finalize=JITTER,
    )
    result, _ = run(s, tmp_path)
    assert result.status is Status.PASSED
    stages = [result.stages[0]]
    for c in result.cases:
        stages += c.stages
    stages.append(result.stages[1])
    assert [st.name for st in stages] == ["initialize"] + ["initialize", "run", "finalize"] * 3 + [
        "finalize"
    ]
    for before, after in itertools.pairwise(stages):
        assert len(before.hosts) == len(after.hosts) == 4
        last_end = max(h.ended_at for h in before.hosts if h.ended_at)
        first_start = min(h.started_at for h in after.hosts if h.started_at)
        assert first_start >= last_end, f"{after.name} started before {before.name} ended"


def test_suite_initialize_failure_skips_every_case_and_still_finalizes(tmp_path: Path):
    s = suite(
        case("a"),
        case("b"),
        initialize='[ "@shortname@" != h2 ]',
        finalize="echo finalized",
    )
    result, folder = run(s, tmp_path)
    assert result.status is Status.FAILED
    assert [c.status for c in result.cases] == [Status.SKIPPED, Status.SKIPPED]
    assert all("h2.phalanx.test" in (c.reason or "") for c in result.cases)
    assert all(c.stages == [] for c in result.cases)  # nothing of theirs ran
    fin = result.stage("finalize")
    assert fin is not None and fin.status is Status.PASSED
    assert output(folder, result, None, "finalize", "h0.phalanx.test") == "finalized\n"


def test_case_initialize_failure_skips_run_but_finalize_runs_and_suite_goes_on(tmp_path: Path):
    s = suite(
        case("broken", init="exit 3", run="echo ran > ran", fin="echo cleaned"),
        case("next", run="echo next"),
    )
    result, folder = run(s, tmp_path)
    broken, nxt = result.cases
    assert broken.status is Status.FAILED
    init, run_stage, fin = broken.stages
    assert init.status is Status.FAILED and {h.exit_code for h in init.hosts} == {3}
    assert run_stage.status is Status.SKIPPED
    assert all(h.reason == "case initialize did not pass" for h in run_stage.hosts)
    assert fin.status is Status.PASSED
    assert output(folder, result, "broken", "finalize", "h1.phalanx.test") == "cleaned\n"
    assert not list(folder.glob("hosts/*/ran"))
    assert nxt.status is Status.PASSED
    assert result.status is Status.FAILED


def test_a_failing_host_fails_the_case_not_the_other_hosts(tmp_path: Path):
    s = suite(case("c", run='[ "@shortname@" != h3 ]'), case("after"))
    result, _ = run(s, tmp_path)
    c, after = result.cases
    statuses = {h.host: h.status for h in c.stages[0].hosts}
    assert statuses["h3.phalanx.test"] is Status.FAILED
    assert [statuses[f"h{i}.phalanx.test"] for i in range(3)] == [Status.PASSED] * 3
    assert c.status is Status.FAILED and after.status is Status.PASSED


def test_errexit_and_the_helper_library(tmp_path: Path):
    script = """source "$PHALANX_FUNCTIONS"
log one two
stamp echo stamped
assert_fail false
run echo ran
false
echo never"""
    result, folder = run(suite(case("c", run=script), n=1), tmp_path)
    text = output(folder, result, "c", "run", "h0.phalanx.test")
    lines = text.splitlines()
    assert lines[0].endswith("] one two") and lines[0].startswith("[")
    assert lines[1].endswith("] stamped")
    assert "ran" in lines
    assert "never" not in text
    assert result.cases[0].stages[0].hosts[0].exit_code == 1


def test_timeout_kills_the_whole_process_group_grandchildren_included(tmp_path: Path):
    script = """bash -c 'trap "" TERM; sleep 300' &
echo $! > grandchild.pid
sleep 300"""
    s = suite(case("slow", run=script, timeout=1), case("after"), timeout=60, n=2)
    result, folder = run(s, tmp_path)
    slow, after = result.cases
    assert slow.status is Status.TIMEOUT
    for host in slow.stages[0].hosts:
        assert host.status is Status.TIMEOUT
        assert "killed" in (host.reason or "")
        assert host.ended_at and host.started_at
        assert (host.ended_at - host.started_at).total_seconds() < 10
    pid_files = list(folder.glob("hosts/*/grandchild.pid"))
    assert len(pid_files) == 2, "the stage did not start its grandchild on every host"
    for pid_file in pid_files:
        pid = int(pid_file.read_text())
        assert not alive(pid), "a grandchild that ignored SIGTERM survived the timeout"
    assert after.status is Status.PASSED


def test_killed_agent_is_lost_within_the_heartbeat_timeout(tmp_path: Path):
    # The stage's parent process is the agent itself.
    s = suite(
        case("victim", run='if [ "@shortname@" = h1 ]; then kill -9 $PPID; sleep 30; fi'),
        case("after"),
    )
    result, _ = run(s, tmp_path, heartbeat_timeout=2)
    victim, after = result.cases
    lost = victim.stages[0].host("h1.phalanx.test")
    assert lost is not None and lost.status is Status.ERROR
    assert (lost.reason or "").startswith("agent lost")
    assert lost.ended_at and lost.started_at
    assert (lost.ended_at - lost.started_at).total_seconds() < 2 + 3
    others = [h.status for h in victim.stages[0].hosts if h.host != "h1.phalanx.test"]
    assert others == [Status.PASSED] * 3
    # The barrier completed without it, and the suite went on.
    assert after.stages[0].host("h0.phalanx.test").status is Status.PASSED
    assert after.stages[0].host("h1.phalanx.test").status is Status.ERROR
    assert result.status is Status.ERROR


def test_a_silent_agent_is_lost_too_and_the_run_does_not_wait_for_it_at_the_end(tmp_path: Path):
    s = suite(
        case(
            "frozen",
            run='if [ "@shortname@" = h1 ]; then echo $PPID > agent.pid; kill -STOP $PPID; fi',
        ),
        n=2,
    )
    started = time.monotonic()
    result, folder = run(s, tmp_path, heartbeat_timeout=1.5)
    took = time.monotonic() - started
    host = result.cases[0].stages[0].host("h1.phalanx.test")
    assert host is not None and host.status is Status.ERROR
    # The connection stays open; only the heartbeats stop.
    assert host.reason == "agent lost: no heartbeat for 1.5s"
    assert (
        result.status is Status.ERROR
        and result.reason == f"frozen: run error: {host.host} ({host.reason})"
    )
    # Start-up, the heartbeat timeout and teardown; not another wait on the
    # frozen agent at the end (that was 10 s).
    assert took < 1.5 + 6, f"the run took {took:.1f}s"
    agent = int((folder / "hosts" / "h1.phalanx.test" / "agent.pid").read_text())
    assert not alive(agent), "the frozen agent was left behind"


def test_tags_are_substituted_and_exported(tmp_path: Path):
    script = (
        "echo @slavename@ $PHALANX_SLAVENAME @role@ @host:h1@ $PHALANX_HOST_H1 "
        "@greeting@ $PHALANX_TAG_GREETING @run_id@ $PHALANX_RUN_ID @port@"
    )
    result, folder = run(suite(case("c", run=script), n=2, tags={"greeting": "hey"}), tmp_path)
    words = output(folder, result, "c", "run", "h0.phalanx.test").split()
    assert words[:8] == [
        "h0.phalanx.test",
        "h0.phalanx.test",
        "server",
        "127.0.0.1",
        "127.0.0.1",
        "hey",
        "hey",
        result.run_id,
    ]
    assert words[8] == result.run_id and int(words[9]) > 0


def test_sync_send_and_wait_across_four_hosts(tmp_path: Path):
    script = """
me=@shortname@
phalanx-send "from_$me" "hello from $me"
for other in h0 h1 h2 h3; do
    echo "$(phalanx-wait from_$other --timeout 20)"
done
for round in 1 2 3; do
    phalanx-sync round --timeout 20
    echo "round $round $(date +%s.%N)"
done
"""
    result, folder = run(suite(case("talk", run=script)), tmp_path)
    assert result.status is Status.PASSED
    rounds: dict[int, list[float]] = {1: [], 2: [], 3: []}
    for i in range(4):
        lines = output(folder, result, "talk", "run", f"h{i}.phalanx.test").splitlines()
        assert lines[:4] == [f"hello from h{j}" for j in range(4)]
        for line in lines[4:]:
            _, n, at = line.split()
            rounds[int(n)].append(float(at))
    # Nobody passes round N+1's barrier before everybody passed round N's.
    assert max(rounds[1]) <= min(rounds[2]) and max(rounds[2]) <= min(rounds[3])


def test_wait_times_out_with_a_clear_message(tmp_path: Path):
    result, folder = run(suite(case("c", run="phalanx-wait nobody --timeout 0.5"), n=1), tmp_path)
    host = result.cases[0].stages[0].hosts[0]
    assert host.status is Status.FAILED and host.exit_code == 1
    text = output(folder, result, "c", "run", host.host)
    assert "timed out after 0.5s waiting for 'nobody'" in text


def test_logs_are_collected_per_stage(tmp_path: Path):
    abs_log = tmp_path / "abs"
    abs_log.mkdir()
    s = suite(
        case("c", init="echo init-line >> app.log", run="echo run-line >> app.log"),
        initialize=f"echo suite-line >> app.log; echo @shortname@ > {abs_log}/@shortname@.log",
        logs=("app.log", f"{abs_log}/@shortname@.log"),
        n=2,
    )
    result, folder = run(s, tmp_path)
    init = result.stage("initialize")
    assert init is not None
    h0 = init.host("h0.phalanx.test")
    assert h0 is not None and len(h0.logs) == 2
    assert (folder / h0.logs[0]).read_text() == "suite-line\n"
    assert (folder / h0.logs[1]).read_text() == "h0\n"
    c = result.cases[0]
    run_logs = c.stage("run").host("h1.phalanx.test").logs
    assert [(folder / p).read_text() for p in run_logs] == ["run-line\n"]


def test_no_process_outlives_the_run(tmp_path: Path):
    s = suite(case("bg", run="sleep 300 & echo $! > bg.pid"), n=2)
    result, folder = run(s, tmp_path)
    assert result.status is Status.PASSED
    pids = [int(p.read_text()) for p in folder.glob("hosts/*/bg.pid")]
    assert len(pids) == 2
    assert not any(alive(pid) for pid in pids)


def test_a_stage_that_ignores_sigterm_is_recorded_killed_by_sigkill(tmp_path: Path):
    s = suite(
        case("stubborn", run="trap '' TERM; sleep 300", timeout=1),
        case("crashes", run="kill -SEGV $$"),
        n=1,
    )
    result, folder = run(s, tmp_path)
    stubborn = result.cases[0].stages[0].hosts[0]
    assert stubborn.status is Status.TIMEOUT
    assert (stubborn.signal, stubborn.exit_code) == (9, 137)
    assert stubborn.reason == (
        "timed out after 1 s (case `stubborn`'s timeout); its process group was killed"
        " (killed by SIGKILL after ignoring SIGTERM)"
    )
    crashed = result.cases[1].stages[0].hosts[0]
    assert crashed.status is Status.FAILED and crashed.signal == 11
    assert crashed.reason == "killed by signal 11 (SIGSEGV)"
    data = json.loads((folder / "results.json").read_text())
    assert data["cases"][0]["stages"][0]["hosts"][0]["signal"] == 9


SERVER_INIT = "sleep 300 & echo $! > server.pid"
ESCAPE = """kill -0 $(cat server.pid) && echo server-alive-in-run
setsid sleep 300 & echo $! > escapee.pid
(setsid sh -c 'sleep 300 & echo $! > double.pid; wait' &)
while [ ! -s double.pid ]; do sleep 0.05; done
"""
ALIVE = """for name in server escapee double; do
  pid=$(cat $name.pid)
  if kill -0 $pid 2>/dev/null && ! grep -q '^State:.*Z' /proc/$pid/status; then
    echo "$name alive"
  else
    echo "$name gone"
  fi
done
"""


def test_what_a_case_leaves_running_lives_through_it_and_ends_with_it(tmp_path: Path):
    # A server from initialize serves run and finalize; processes that left
    # the stage's group (setsid, a double fork) end with the case all the same.
    s = suite(case("svc", init=SERVER_INIT, run=ESCAPE, fin=ALIVE), case("next", run=ALIVE), n=2)
    result, folder = run(s, tmp_path)
    assert result.status is Status.PASSED, result
    for i in range(2):
        h = f"h{i}.phalanx.test"
        assert output(folder, result, "svc", "run", h) == "server-alive-in-run\n"
        fin = output(folder, result, "svc", "finalize", h).split("\n")
        assert fin[:3] == ["server alive", "escapee alive", "double alive"]
        after = output(folder, result, "next", "run", h).split("\n")
        assert after[:3] == ["server gone", "escapee gone", "double gone"]
        for name in ("server", "escapee", "double"):
            assert not alive(int((folder / "hosts" / h / f"{name}.pid").read_text()))
