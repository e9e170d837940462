"""Every field of a run's records reaches every place they are kept: the
wire (what a host reports), results.json, the store's rows and the API
document. The records are walked field by field from their own type hints,
so a field added to a record and not carried somewhere fails here."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from phalanx.codec import decode, encode
from phalanx.events import CaseRecord, RunRecord, StageRecord
from phalanx.model import CaseResult, HostResult, RunResult, StageResult, Status
from phalanx.report.json import from_json, to_json
from phalanx.store.runs import HostStageRecord
from phalanx.store.store import Store
from phalanx.store.tables import HostResultRow
from phalanx.tasks import Outcome
from phalanx.wire.messages import StageResult as StageResultMessage
from phalanx.wire.messages import encode as wire_encode
from phalanx.wire.messages import parse_agent_message

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
# Fields a record fills in as it is made, whose value comes from its parts.
CHILDREN = {"hosts", "stages", "cases"}


def distinct(cls: type, salt: int = 0) -> Any:
    """A `cls` whose every field holds a value of its own, none a default."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for n, f in enumerate(dataclasses.fields(cls), start=1 + salt):
        values[f.name] = _value(hints[f.name], f.name, n)
    return cls(**values)


def _value(hint: Any, name: str, n: int) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _value(args[0], name, n)
    if hint is str:
        return f"{name}-{n}"
    if hint is bool:
        return True
    if hint is int:
        return 100 + n
    if hint is float:
        return n + 0.5
    if hint is datetime:
        return T0 + timedelta(seconds=n)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return Status.TIMEOUT if hint is Status else list(hint)[-1]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return distinct(hint, n)  # a record within the record (a case's history)
    if origin in (tuple, list) and isinstance(args[0], type) and dataclasses.is_dataclass(args[0]):
        return (distinct(args[0], n),)
    if origin in (tuple, list):
        return (f"{name}-{n}",) if origin is tuple else [f"{name}-{n}"]
    if hint is Any:
        return {"field": name, "n": n, "nested": [1, 2.5, None, True]}
    raise AssertionError(f"no distinct value for {name}: {hint!r}: teach this test the type")


def host_record(salt: int = 0) -> HostResult:
    return distinct(HostResult, salt)  # type: ignore[no-any-return]


def a_run(host: HostResult) -> RunResult:
    stage = dataclasses.replace(distinct(StageResult), hosts=[host])
    case = dataclasses.replace(distinct(CaseResult), stages=[stage])
    suite_stage = dataclasses.replace(distinct(StageResult, 50), name="initialize", hosts=[])
    run: RunResult = dataclasses.replace(distinct(RunResult), stages=[suite_stage], cases=[case])
    return run


def test_every_field_of_an_outcome_crosses_the_wire() -> None:
    outcome = distinct(Outcome)
    message = StageResultMessage(stage_id="s", outcome=outcome, started_at=T0, ended_at=T0)
    back = parse_agent_message(wire_encode(message))
    assert isinstance(back, StageResultMessage)
    assert back.outcome == outcome


def test_every_field_of_a_run_reaches_results_json_and_back(tmp_path: Path) -> None:
    run = a_run(host_record())
    document = json.loads(json.dumps(to_json(run)))
    # Each record's object holds every field of the record, as the codec wrote it.
    for name in (f.name for f in dataclasses.fields(RunResult)):
        assert name in document, name
    (case,) = document["cases"]
    (stage,) = case["stages"]
    (host,) = stage["hosts"]
    for record, written in ((run.cases[0], case), (run.cases[0].stages[0], stage)):
        for f in dataclasses.fields(record):
            if f.name not in CHILDREN:
                assert written[f.name] == encode(getattr(record, f.name)), f.name
    assert {k: host[k] for k in encode(run.cases[0].stages[0].hosts[0])} == encode(
        run.cases[0].stages[0].hosts[0]
    )
    back = from_json(document)
    assert back == run


def test_every_field_of_a_host_record_has_a_column() -> None:
    columns = {c.key for c in HostResultRow.__mapper__.column_attrs}
    missing = [f.name for f in dataclasses.fields(HostResult) if f.name not in columns]
    assert missing == [], f"HostResult fields with no stage_results column: {missing}"


async def test_a_host_record_goes_through_the_store_unchanged(store: Store) -> None:
    record = host_record()
    run = a_run(record)
    await store.runs.create(run.run_id, run.suite, trigger="test", hosts=[record.host])
    await store.runs.record_stage_result(
        HostStageRecord(run_id=run.run_id, stage_id="s1", case="c", stage="run", result=record)
    )
    loaded = await store.runs.load_result(run.run_id)
    assert loaded is not None
    (case,) = loaded.cases
    (stage,) = case.stages
    assert stage.hosts == [record]
    # The run's final record too: every field of run, case, stage and host.
    await store.runs.record_run_result(run)
    final = await store.runs.load_result(run.run_id)
    assert final is not None
    assert to_json(final) == to_json(run)


def test_the_api_document_of_a_host_is_the_record_plus_what_the_folder_adds() -> None:
    record = host_record()
    document = to_json(a_run(record))
    (host,) = document["cases"][0]["stages"][0]["hosts"]
    derived = {"duration", "output_tail", "output_size"}
    assert decode(HostResult, {k: v for k, v in host.items() if k not in derived}) == record


def test_a_working_result_freezes_into_its_record_whole() -> None:
    run = a_run(host_record())
    frozen = RunRecord.of(run)
    assert encode(frozen) == encode(run)
    assert isinstance(frozen.cases[0], CaseRecord)
    assert isinstance(frozen.cases[0].stages[0], StageRecord)
    assert frozen.cases[0].stages[0].hosts == (run.cases[0].stages[0].hosts[0],)
