"""``combtest.replay``: replay one walk, or one walk of a run's logs."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from phalanx.combinatorial.compat import runner
from phalanx.combinatorial.compat.encode import decode
from phalanx.combinatorial.compat.utils import get_class_from_qualname
from phalanx.combinatorial.replay import load_walk
from phalanx.combinatorial.trace import FORMAT
from phalanx.combinatorial.walk import Walk

__all__ = ["load_from_master", "load_from_trace", "replay_walk", "replay_walk_by_id"]


def load_from_trace(trace_file: str | Path, walk_id: int) -> Walk:
    """Walk ``walk_id`` of a py-combtest-format trace; ValueError if it is not there."""
    out = Walk()
    found = False
    with open(trace_file, encoding="utf-8") as f:
        for line in f:
            record = decode(line)
            if not isinstance(record, dict) or record.get("walk_id") != walk_id:
                continue
            found = True
            if record.get("serial_action") is not None:
                out.append(record["serial_action"])
            out += record["walk"]
    if not found:
        raise ValueError(f"cannot find walk with id {walk_id} in {trace_file}")
    return out


def load_from_master(log_file: str | Path, walk_id: int) -> Walk:
    """Walk ``walk_id`` from the traces a master log names."""
    with open(log_file, encoding="utf-8") as f:
        f.readline()  # {"id": "master"}
        for line in f:
            trace = decode(line)["logs"][1]
            if trace:
                try:
                    return load_from_trace(trace, walk_id)
                except (ValueError, OSError):
                    pass
    raise ValueError(f"cannot find walk with id {walk_id} in the traces {log_file} names")


def _load_walk(log_file: str | Path, walk_id: int) -> Walk:
    with open(log_file, encoding="utf-8") as f:
        first = f.readline()
    try:
        head = json.loads(first)
    except ValueError:
        raise ValueError(f"{log_file} is not a master log or a trace") from None
    if isinstance(head, dict) and head.get("trace") == FORMAT:
        return load_walk(log_file, walk_id)
    if isinstance(head, dict) and "id" in head:
        return load_from_master(log_file, walk_id)
    return load_from_trace(log_file, walk_id)


def replay_walk(
    walk_to_run: Walk,
    step: bool = False,
    replay_func_qualname: str | None = None,
    state: Any = None,
) -> Any:
    """Run ``walk_to_run`` with ``replay_func_qualname`` (default runner.replay_walk);
    return ``state``."""
    func: Callable[..., Any] = runner.replay_walk
    if replay_func_qualname is not None:
        func = _resolve_function(replay_func_qualname)
    func(walk_to_run, step=step, state=state)
    return state


def _resolve_function(name: str) -> Callable[..., Any]:
    module_name, _, attr = name.rpartition(".")
    try:
        return getattr(get_class_from_qualname(module_name), attr)  # type: ignore[no-any-return]
    except ValueError:
        import importlib

        return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]


def replay_walk_by_id(
    log_file: Mapping[str, Any] | str | Path,
    walk_id: int,
    step: bool = False,
    replay_func_qualname: str | None = None,
    state: Any = None,
) -> Any:
    """Replay walk ``walk_id`` of a run: ``log_file`` is run_tests' ``logs``, a master
    log, or a trace (py-combtest's or phalanx's). Returns ``state``."""
    path = log_file["master"] if isinstance(log_file, Mapping) else log_file
    walk = _load_walk(path, walk_id)
    return replay_walk(walk, step=step, replay_func_qualname=replay_func_qualname, state=state)
