"""py-combtest code, with only its import lines changed, on phalanx.combinatorial.compat.

The actions (combtest_actions.py) are written the way py-combtest's own tests
write theirs; each test here is one thing such code relies on.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

import phalanx.combinatorial.compat.bootstrap as bootstrap
import phalanx.combinatorial.compat.encode as encode
import phalanx.combinatorial.compat.replay as replay
import phalanx.combinatorial.compat.runner as runner
import phalanx.combinatorial.compat.walk as walk
from phalanx.combinatorial.compat.action import OptionSet
from phalanx.combinatorial.compat.utils import get_my_IP
from tests.combinatorial import combtest_actions as ca


def test_run_tests_unpacks_as_the_seven_tuple_and_keeps_the_attributes() -> None:
    results = runner.run_tests([ca.Colour, ca.Broken], gather_states=True, state={})
    walk_count, error_count, segment_count, elapsed, states, logs, failed = results

    assert (walk_count, error_count, segment_count) == (3, 3, 3)
    assert elapsed > 0
    assert sum(len(group) for group in states) == 3
    assert failed == [0, 1, 2]
    assert logs == {"master": "", "remote": {}}
    assert len(results) == 7
    # phalanx's own attributes read through.
    assert results.walk_count == 3 and results.failed_tests == [0, 1, 2]
    assert results.failures[0].error_type == "builtins.OSError"
    assert "3 failed" in results.summary()


def test_replay_walk_says_whether_the_walk_was_cancelled() -> None:
    state: dict[str, Any] = {}
    assert runner.replay_walk(walk.Walk([ca.Colour("red")]), state=state) is False
    assert state == {"path": ["red"]}

    state = {}
    cancelled = runner.replay_walk(walk.Walk([ca.Colour("red"), ca.Stop(True)]), state=state)
    assert cancelled is True
    assert state == {"path": ["red"]}


def test_a_failing_replay_raises_walk_failed_error_with_the_walk_and_errno() -> None:
    failing = walk.Walk([ca.Colour("blue"), ca.Broken("disk")])
    with pytest.raises(walk.WalkFailedError) as info:
        runner.replay_walk(failing, state={}, log_errors=False)

    error = info.value
    assert isinstance(error, RuntimeError)
    assert error.errno == errno.ENOSPC
    assert isinstance(error.__cause__, OSError)
    text = str(error)
    assert "Traceback" in text and "no space left on disk" in text
    assert "Broken('disk')" in text and '"path": ["blue"]' in text


def test_encode_writes_magic_keys_and_reads_them_back() -> None:
    value = {"resize": ca.Resize(ca.Param(4)), "plain": [1, "two"]}
    text = encode.encode(value)

    raw = json.loads(text)
    key = encode._DEFAULT_MAGIC + "tests.combinatorial.combtest_actions.Resize"
    assert raw["resize"] == {
        key: {encode._DEFAULT_MAGIC + "tests.combinatorial.combtest_actions.Param": {"size": 4}}
    }
    back = encode.decode(text)
    assert back == value
    assert encode.encode(back) == text


def test_a_magic_key_that_names_no_class_stays_a_plain_dict() -> None:
    value = {encode._DEFAULT_MAGIC + "no such thing": ca.Param(2)}
    assert encode.decode(encode.encode(value)) == value


def test_encode_refuses_what_has_no_json_form() -> None:
    with pytest.raises(TypeError, match="to_json"):
        encode.encode(object())


def test_decoding_an_action_twice_gives_the_same_instance() -> None:
    text = encode.encode(ca.Resize(ca.Param(3)))
    first = encode.decode(text)
    assert first == ca.Resize(ca.Param(3))
    assert encode.decode(text) is first


def test_a_walk_encodes_and_decodes_as_a_walk() -> None:
    original = walk.Walk(ca.Colour.get_option_set())
    back = encode.decode(encode.encode(original))
    assert isinstance(back, walk.Walk)
    assert back == original


def test_py_combtest_keywords_are_accepted() -> None:
    results = runner.run_tests(
        [ca.Colour],
        state={},
        verbose=0,
        logger_port=6187,
        runner_class=runner.MultistageWalkRunningService,
        service_group_class=runner.ContinuingWalkServiceGroup,
        service_handler_class=bootstrap.ServiceHandler_Local,
        service_infos=None,
        max_thread_count=2,
        gather_states=False,
        log_dir=None,
    )
    assert results.walk_count == 3
    assert results.states is None


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("runner_class", object),
        ("service_group_class", dict),
        ("service_handler_class", bootstrap.ServiceHandler_SSH),
        ("service_infos", [{"ip": "10.0.0.2"}]),
    ],
)
def test_py_combtest_service_keywords_are_refused_by_name(keyword: str, value: Any) -> None:
    with pytest.raises(TypeError, match=f"run_tests\\({keyword}=.*executor"):
        runner.run_tests([ca.Colour], **{keyword: value})


def test_a_walk_order_may_hold_option_sets() -> None:
    # As py-combtest's docstring shows: get_option_set() results, or chosen options.
    order = [ca.Colour.get_option_set(), OptionSet(["triangle", "circle"], action_class=ca.Shape)]
    results = runner.run_tests(order, state={}, gather_states=True)

    paths = sorted(s["path"] for group in results.states for s in group)
    assert paths == sorted([c, s] for c in ("red", "green", "blue") for s in ("triangle", "circle"))


def test_walk_plus_equals_a_list() -> None:
    w = walk.Walk()
    w += [ca.Colour("red"), ca.Size(2)]
    w += walk.Walk([ca.Shape("square")])
    assert list(w) == [ca.Colour("red"), ca.Size(2), ca.Shape("square")]
    with pytest.raises(TypeError, match="Action instances"):
        w += ["not an action"]  # type: ignore[list-item]


def test_logs_read_as_py_combtest_dict_and_replay_by_id(tmp_path: Path) -> None:
    order = [ca.Colour, ca.Mark, ca.Size]
    results = runner.run_tests(order, state={}, log_dir=tmp_path, gather_states=True)
    logs = results.logs

    assert set(logs) == {"master", "remote"}
    assert Path(logs["master"]).is_file()
    log, trace = logs["remote"][get_my_IP()]
    assert Path(log).is_file() and Path(trace).is_file()
    assert logs.trace is not None and logs.trace.is_file()  # phalanx's own trace

    # Rebuild walk 7 from the trace lines, as py-combtest users do.
    rebuilt = walk.Walk()
    for line in Path(trace).read_text().splitlines():
        record = encode.decode(line)
        if record["walk_id"] != 7:
            continue
        if record["serial_action"] is not None:
            rebuilt.append(record["serial_action"])
        rebuilt += record["walk"]
    expected = walk.Walk([ca.Colour("red"), ca.Mark("m2"), ca.Size(2)])
    assert rebuilt == expected

    state = replay.replay_walk_by_id(logs, 7, state={})
    assert state == {"path": ["red", "m2", 2], "marked": "m2"}
    final = dict(zip(results.results.state_ids, results.results.states, strict=True))
    assert final[7] == state


def test_states_come_per_worker() -> None:
    results = runner.run_tests(
        [ca.Colour, ca.Size], state={}, gather_states=True, max_thread_count=2
    )
    groups = results.states
    assert 1 <= len(groups) <= 2
    assert all(groups)
    assert sum(len(g) for g in groups) == 6
    # The grouping is by the worker that ran each walk's last segment.
    workers = results.results.state_workers
    assert len(groups) == len(set(workers))


def test_gather_states_2_gives_state_and_walk_info() -> None:
    results = runner.run_tests([ca.Colour, ca.Stop], state={}, gather_states=2)
    pairs = [p for group in results.states for p in group]
    assert sorted(info["walk_id"] for _, info in pairs) == [0, 1, 2]
    assert all(info["cancel"] for _, info in pairs)
    assert sorted(s["path"][0] for s, _ in pairs) == ["blue", "green", "red"]


def test_each_walk_gets_its_own_copy_of_the_state() -> None:
    state = ca.CopyCounting(seen=[])
    results = runner.run_tests([ca.Seen], state=state, gather_states=True)

    finals = [s for group in results.states for s in group]
    # One copy per walk (its __copy__ ran), and nothing shared between walks:
    # py-combtest's shallow copies shared the nested list between a worker's walks.
    assert sorted(s["seen"] for s in finals) == [[1], [2], [3], [4]]
    assert all(s["copies"] == 1 for s in finals)
    assert state == {"seen": []}


def test_a_serial_update_keeps_what_the_walk_wrote_before_it() -> None:
    # [A1, S, A1, C]: the serial action must not reset the walk's earlier values.
    order = [ca.Colour, ca.Mark, ca.Size, ca.Shape]
    results = runner.run_tests(order, state={"path": []}, gather_states=True)

    finals = [s for group in results.states for s in group]
    assert results.error_count == 0
    assert sorted(s["path"] for s in finals) == sorted(
        [c, m, n, "square"] for c in ("red", "green", "blue") for m in ("m1", "m2") for n in (1, 2)
    )


def test_a_serial_action_re_setting_a_value_reaches_every_walk() -> None:
    # Mark sets "mark"; Colour consumes it; SameMark sets it again, to the value
    # it may already have had on the branch: every walk must still see it.
    order = [ca.Mark, ca.Colour, ca.SameMark, ca.Size]
    results = runner.run_tests(order, state={}, gather_states=True)

    finals = [s for group in results.states for s in group]
    assert len(finals) == 12
    assert all(s["path"][-2] == "m1" for s in finals)


def test_a_trailing_serial_update_reaches_the_final_states() -> None:
    results = runner.run_tests([ca.Colour, ca.Mark], state={}, gather_states=True)

    finals = [s for group in results.states for s in group]
    assert sorted((s["path"][0], s["marked"], s["mark"]) for s in finals) == sorted(
        (c, m, m) for c in ("red", "green", "blue") for m in ("m1", "m2")
    )


def test_a_serial_action_returning_true_pushes_its_state() -> None:
    results = runner.run_tests([ca.Colour, ca.Approve], state={}, gather_states=True)
    finals = [s for group in results.states for s in group]
    assert [s["approved"] for s in finals] == [1, 1, 1]


def test_a_serial_update_on_a_list_state_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="update"):
        runner.run_tests([ca.Tally, ca.Propose, ca.Tally], state=[])


def test_replay_by_id_reads_a_master_log_or_either_trace(tmp_path: Path) -> None:
    results = runner.run_tests([ca.Colour, ca.Mark], state={}, log_dir=tmp_path)
    logs = results.logs
    combtest_trace = logs["remote"][get_my_IP()][1]

    for source in (logs["master"], combtest_trace, str(logs.trace)):
        state = replay.replay_walk_by_id(source, 4, state={})
        assert state == {"path": ["green"], "mark": "m2", "marked": "m2"}


def test_an_option_set_steps_with_next_and_iterates_afresh() -> None:
    options = ca.Size.get_option_set()
    assert next(options) == ca.Size(1)
    assert next(options) == ca.Size(2)
    with pytest.raises(StopIteration):
        next(options)
    assert list(options) == [ca.Size(1), ca.Size(2)]
