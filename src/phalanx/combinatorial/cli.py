"""The body of ``phalanx replay TRACE WALK_ID [--state JSON] [--step]``.

The project's CLI parses arguments and calls :func:`replay`; this module holds
no argument parsing of its own.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from phalanx.combinatorial import replay as replaying
from phalanx.combinatorial import state as state_codec
from phalanx.combinatorial.trace import read_entry
from phalanx.exits import EXIT_DEFINITIONS, EXIT_FAILED, EXIT_OK


def replay(trace: Path, walk_id: int, state_json: str | None, step: bool) -> int:
    """Replay walk ``walk_id`` of ``trace``; print what runs and how it ends."""
    try:
        entry = read_entry(Path(trace), walk_id)
        walk = entry.walk()
    except (OSError, LookupError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DEFINITIONS
    try:
        if state_json is not None:
            state = state_codec.loads(state_json)
        else:
            # Without --state, the walk starts from the run's own initial state.
            state = state_codec.decode(entry.initial)
    except (json.JSONDecodeError, state_codec.StateError) as exc:
        print(f"error: --state is not valid JSON state: {exc}", file=sys.stderr)
        return EXIT_DEFINITIONS

    if entry.outcome == "pruned":
        # Nothing ran: replaying it would print a pass the run never had.
        print(
            f"walk {walk_id} of {trace} was pruned: an action's should_cancel dropped it "
            "before it ran (it repeats another walk), so there is nothing to replay"
        )
        for i, action in enumerate(walk):
            print(f"  {i}: {action!r}")
        return EXIT_OK
    origin = f", shrunk from walk {entry.shrunk_from}" if entry.shrunk_from is not None else ""
    print(f"replaying walk {walk_id} of {trace} (branch {entry.branch}{origin})")
    if entry.outcome:
        print(
            f"  recorded outcome: {entry.outcome}" + (f": {entry.detail}" if entry.detail else "")
        )
    for i, action in enumerate(walk):
        print(f"  {i}: {action!r}")
    try:
        final, cancelled = replaying.replay(walk, state, step)
    except replaying.ReplayStopped as exc:
        print(f"stopped: {exc}")
        return EXIT_FAILED
    except Exception:
        traceback.print_exc()
        print(f"walk {walk_id} failed")
        return EXIT_FAILED
    print(f"walk {walk_id} {'was cancelled' if cancelled else 'passed'}")
    try:
        print(f"state: {state_codec.dumps(final)}")
    except state_codec.StateError:
        print(f"state: {final!r}")
    return EXIT_OK
