"""`phalanx submit SUITE --coordinator URL`: queue a run on a service and,
with `--wait`, follow it to its end and exit with its exit code.
`phalanx submit --rerun ID [--failed-only]` runs a past run's suite again
(its current definition), all of it or only the cases that failed.

The token (a user API token from `phalanx user token`, operator or admin)
comes from `--token-file`, else `$PHALANX_TOKEN`. Following reads the
run's event stream (`GET /api/runs/{id}/events`: its document at each
change) and prints a line per change, in the order things happened, like
`phalanx run --plain`: each stage and case as it ends, and each host that
did not pass a stage (a lost agent among them) as soon as the run knows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phalanx.exits import EXIT_DEFINITIONS, EXIT_INFRASTRUCTURE, EXIT_OK, for_status

TOKEN_ENV = "PHALANX_TOKEN"
RETRY = 0.5  # after a dropped stream, before the next
UNREACHABLE = 60.0  # give up after the coordinator has not answered for this long
REQUEST_TIMEOUT = 30.0
STREAM_SILENCE = 60.0  # the service sends a sign of life every 15 s; more silence is a dead link


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[..., argparse.ArgumentParser],
) -> None:
    parser = command(commands, "submit", submit)
    parser.add_argument("suite", nargs="?", help="the suite to run")
    parser.add_argument(
        "--coordinator", required=True, metavar="URL", help="the service (http://host:8470)"
    )
    parser.add_argument(
        "--token-file", type=Path, metavar="FILE", help=f"a user API token (else ${TOKEN_ENV})"
    )
    parser.add_argument(
        "--ca",
        type=Path,
        metavar="FILE",
        help="verify an https:// service with this CA certificate (else the system's CAs)",
    )
    parser.add_argument(
        "--wait", action="store_true", help="follow the run and exit with its exit code"
    )
    parser.add_argument("--rerun", metavar="ID", help="run a past run's suite again (no SUITE)")
    parser.add_argument(
        "--failed-only", action="store_true", help="with --rerun: only the cases that failed"
    )


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _message(response: Any) -> str:
    try:
        return str(response.json().get("message") or response.text)
    except ValueError:
        return str(response.text)[:200]


def submit(args: argparse.Namespace) -> int:
    """Queue a run of a suite on a phalanx service (and follow it with --wait)."""
    import httpx

    if (args.suite is None) == (args.rerun is None):
        _err("error: give a SUITE, or --rerun ID")
        return EXIT_DEFINITIONS
    if args.failed_only and args.rerun is None:
        _err("error: --failed-only goes with --rerun ID")
        return EXIT_DEFINITIONS
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            _err(f"error: --token-file {args.token_file}: {exc.strerror or exc}")
            return EXIT_DEFINITIONS
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        _err(f"error: no token: give --token-file FILE or set ${TOKEN_ENV}")
        return EXIT_DEFINITIONS
    verify: Any = True
    if args.ca is not None:
        from phalanx.host.__main__ import tls_client_context

        try:
            verify = tls_client_context(args.ca)
        except (OSError, ValueError) as exc:
            _err(f"error: --ca {args.ca}: not a usable CA certificate ({exc})")
            return EXIT_DEFINITIONS
    base = args.coordinator.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(
        base_url=base, headers=headers, timeout=REQUEST_TIMEOUT, verify=verify
    ) as client:
        try:
            if args.rerun is not None:
                response = client.post(
                    f"/api/runs/{args.rerun}/rerun", json={"failed_only": args.failed_only}
                )
            else:
                response = client.post(f"/api/suites/{args.suite}/runs")
        except httpx.HTTPError as exc:
            _err(f"error: cannot reach {base}: {exc}")
            return EXIT_INFRASTRUCTURE
        if response.status_code != 201:
            _err(f"error: {response.status_code}: {_message(response)}")
            return EXIT_INFRASTRUCTURE if response.status_code >= 500 else EXIT_DEFINITIONS
        run_id, suite = response.json()["id"], response.json()["suite"]
        print(f"run {run_id} of suite {suite} queued", flush=True)
        if not args.wait:
            return EXIT_OK
        return _follow(client, run_id)


def _follow(client: Any, run_id: str) -> int:
    import httpx

    shown: dict[str, str] = {}
    last_answer = time.monotonic()
    timeout = httpx.Timeout(REQUEST_TIMEOUT, read=STREAM_SILENCE)
    # While the service cannot read its database it says so (an
    # `unavailable` event, then 503s): said once, and waited for as for a
    # service that does not answer.
    unavailable = ""
    while True:
        try:
            with client.stream("GET", f"/api/runs/{run_id}/events", timeout=timeout) as response:
                if response.status_code == 503:
                    response.read()
                    unavailable = _unavailable(unavailable, _message(response))
                elif response.status_code != 200:
                    response.read()
                    _err(f"error: {response.status_code}: {_message(response)}")
                    return EXIT_INFRASTRUCTURE
                event = ""
                for line in response.iter_lines() if response.status_code == 200 else ():
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                        continue
                    if not line.startswith("data: "):
                        continue  # a keepalive, a blank line
                    data = json.loads(line.removeprefix("data: "))
                    if event == "unavailable":
                        unavailable = _unavailable(unavailable, str(data.get("message")))
                        break
                    last_answer, unavailable = time.monotonic(), ""
                    _progress(data, shown)
                    status = data.get("status")
                    if status not in ("queued", "running"):
                        return _ended(run_id, data)
        except httpx.HTTPError as exc:
            if time.monotonic() - last_answer > UNREACHABLE:
                _err(f"error: the coordinator stopped answering: {exc}")
                return EXIT_INFRASTRUCTURE
        if unavailable and time.monotonic() - last_answer > UNREACHABLE:
            _err(f"error: {unavailable}")
            return EXIT_INFRASTRUCTURE
        # The stream ended early (the service restarted, a proxy cut it): again.
        time.sleep(RETRY)


def _unavailable(said: str, message: str) -> str:
    """Say that the service cannot read its database, once while it lasts."""
    if not said:
        _err(f"the coordinator: {message}; waiting")
    return message


def _ended(run_id: str, document: dict[str, Any]) -> int:
    status = str(document.get("status"))
    reason = document.get("reason")
    print(f"run {run_id}: {status}" + (f" ({reason})" if reason else ""), flush=True)
    from phalanx.model import Status  # not with the module: every command's parser imports it

    try:
        return for_status(Status(status))
    except ValueError:
        return EXIT_INFRASTRUCTURE  # interrupted: the service stopped under it


def _progress(document: dict[str, Any], shown: dict[str, str]) -> None:
    """Print what changed since the last look: the run's state, then each
    stage and case as it ends."""
    status = str(document.get("status"))
    ended = status not in ("queued", "running")
    lines: list[tuple[str, str]] = [] if ended else [("run", status)]
    if document.get("waiting"):
        lines.append(("waiting", str(document["waiting"])))
    stages = document.get("stages") or []
    first = [s for s in stages if s["name"] == "initialize"]
    for stage in first:
        lines += _hosts_not_passing(f"suite {stage['name']}", stage)
        lines.append((f"suite {stage['name']}", stage["status"]))
    for case in document.get("cases") or []:
        for stage in case.get("stages") or []:
            where = f"{case['name']} {stage['name']}"
            lines += _hosts_not_passing(where, stage)
            lines.append((where, stage["status"]))
        lines.append((f"{case['name']}", case["status"]))
    for stage in stages:
        if stage not in first:
            lines += _hosts_not_passing(f"suite {stage['name']}", stage)
            lines.append((f"suite {stage['name']}", stage["status"]))
    if ended:
        lines.append(("run", status))
    for key, value in lines:
        if value in ("pending", "running") and key != "run":
            continue
        if shown.get(key) != value:
            shown[key] = value
            stamp = time.strftime("%H:%M:%S")
            print(f"{stamp} {key}: {value}" if key != "waiting" else f"{stamp} {value}", flush=True)


def _hosts_not_passing(where: str, stage: dict[str, Any]) -> list[tuple[str, str]]:
    """A line for each host that ended `stage` without passing, while the
    others may still run it: `greet run r2.t.test: error (agent lost: ...)`."""
    lines = []
    for host in stage.get("hosts") or []:
        status = host.get("status")
        if status in ("passed", "skipped", "pending", "running"):
            continue
        reason = host.get("reason")
        lines.append((f"{where} {host['host']}", f"{status}" + (f" ({reason})" if reason else "")))
    return lines
