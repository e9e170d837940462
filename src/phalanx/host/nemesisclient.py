"""`phalanx-nemesis`: network faults on a schedule, from inside a stage.

    phalanx-nemesis --hosts e1,e2,e3 --every 2s --for 10s --seed 7 \\
        partition-halves isolate-random "slow-random 200ms" &

Every `--every` it alternates: start a fault picked from the list (by the
seed: the same seed, the same schedule), heal it. Faults go through the
agent as `phalanx-net` requests; each start and heal is printed and
recorded as the nemesis's `info` event (in the case's history inside a
stage, and in $PHALANX_HISTORY when it is set). Whatever happens (the end,
SIGTERM, an error), the network is healed before it exits. `pause` and
`kill` are a case's `nemesis:` key's (the coordinator sends the signals),
not this command's.

Standard library only: it starts inside stages.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from types import FrameType
from typing import Any

from phalanx.history.client import destination, record
from phalanx.history.nemesis import Step, parse_fault, schedule
from phalanx.host.netclient import ask, parse_delay, parse_group

EXIT_USAGE = 2
EXIT_REFUSED = 1


class _Stop(Exception):
    pass


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def request(step: Step) -> dict[str, Any]:
    """The phalanx-net request a step makes."""
    if step.action == "heal":
        return {"action": "heal"}
    if step.groups:
        return {"action": "partition", "groups": [list(g) for g in step.groups]}
    if step.fault.kind == "isolate-random":
        return {"action": "isolate", "host": step.host}
    return {"action": "slow", "host": step.host, "delay": step.delay}


def _record(step: Step) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] nemesis: {step.what}", flush=True)
    if destination() is None:
        entry = {"process": "nemesis", "type": "info", "f": step.action, "value": step.what}
        # The case's history (through the agent) and $PHALANX_HISTORY: a
        # record lost is not worth ending the nemesis, which must heal.
        with contextlib.suppress(OSError):
            record({**entry, "time": time.time()})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="phalanx-nemesis", description="Network faults on a schedule, healed at the end."
    )
    parser.add_argument("--hosts", required=True, help="the hosts to fault, joined by commas")
    parser.add_argument("--every", default="2s", help="between a start and its heal (2s)")
    parser.add_argument("--for", dest="duration", required=True, help="how long in all (10s)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed, the same schedule")
    parser.add_argument("faults", nargs="+", metavar="FAULT", help="partition-halves, ...")
    args = parser.parse_args(argv)
    try:
        faults = [parse_fault(text) for text in args.faults]
        for fault in faults:
            if fault.kind in ("pause", "kill"):
                raise ValueError(
                    f"{fault.kind} is a case's nemesis fault (nemesis: {{faults: [{fault.kind} NAME]}}), "
                    "not phalanx-nemesis's"
                )
        steps = schedule(
            faults,
            parse_group(args.hosts),
            parse_delay(args.every),
            args.seed,
            parse_delay(args.duration),
        )
    except ValueError as exc:
        print(f"phalanx-nemesis: {exc}", file=sys.stderr)
        return EXIT_USAGE
    signal.signal(signal.SIGTERM, _stop)
    start = time.monotonic()
    code = 0
    try:
        for step in steps:
            time.sleep(max(0.0, start + step.at - time.monotonic()))
            refused = ask(request(step))
            if refused is not None:
                print(f"phalanx-nemesis: {step.what}: {refused}", file=sys.stderr)
                code = EXIT_REFUSED
                break
            _record(step)
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        # The network is whole again whatever ended the schedule.
        if ask({"action": "heal"}) is not None:
            code = EXIT_REFUSED
    return code


def entry() -> None:
    sys.exit(main(sys.argv[1:]))
