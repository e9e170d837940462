"""Recording from Python tests: `phalanx.history.op` writes the records
`phalanx-op` writes, from many threads into one file, and the checker
reads them."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from phalanx import history
from phalanx.history import register
from phalanx.history.formats import parse
from phalanx.history.ops import pair


def test_operations_in_with_blocks_record_ok_fail_and_info(tmp_path: Path) -> None:
    path = str(tmp_path / "history.jsonl")
    with history.op("write", 3, key="x", client="c1", path=path):
        pass
    with history.op("read", key="x", client="c1", path=path) as o:
        o.ok(3)
    with history.op("cas", (1, 2), key="x", client="c1", path=path) as o:
        o.fail()
    with (
        pytest.raises(TimeoutError),
        history.op("write", 4, key="x", client="c1", path=path),
    ):
        raise TimeoutError("the store did not answer")
    with history.op("read", key="x", client="c1", path=path):
        pass  # no value given: unknown
    got = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert [(r["type"], r["f"], r["value"]) for r in got] == [
        ("invoke", "write", 3),
        ("ok", "write", 3),
        ("invoke", "read", None),
        ("ok", "read", 3),
        ("invoke", "cas", [1, 2]),
        ("fail", "cas", [1, 2]),
        ("invoke", "write", 4),
        ("info", "write", 4),
        ("invoke", "read", None),
        ("info", "read", None),
    ]
    assert {r["process"] for r in got} == {got[0]["process"]}
    assert got[0]["process"].endswith("/c1")


def test_threads_recording_a_real_register_give_a_linearizable_history(tmp_path: Path) -> None:
    path = str(tmp_path / "history.jsonl")
    lock = threading.Lock()
    cell: dict[str, int] = {}

    def client(n: int) -> None:
        for i in range(50):
            value = n * 1000 + i
            with history.op("write", value, key="x", client=f"t{n}", path=path), lock:
                cell["x"] = value
            with history.op("read", key="x", client=f"t{n}", path=path) as o, lock:
                o.ok(cell["x"])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    events = parse(Path(path).read_text(), path)
    assert len(events) == 4 * 50 * 2 * 2
    assert register.check(pair(events)).valid


def test_without_a_history_file_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHALANX_HISTORY", raising=False)
    with pytest.raises(RuntimeError, match=r"\$PHALANX_HISTORY is not set"), history.op("read"):
        pass
