"""`phalanx-vm`: a VM of the run moved from inside a stage.

    phalanx-vm migrate                  this host's VM to a new QEMU on its hypervisor
    phalanx-vm migrate vm2              another host's VM
    phalanx-vm migrate --to hv2         to the hypervisor named hv2 (its disks mirrored)
    phalanx-vm migrate --mode unix      over a unix socket instead of loopback TCP

The request goes to the host's agent over its local socket, and from there
to the coordinator, which has the VM's hypervisor move it and answers once
the guest runs at its destination (or says why not: hosts that are not VMs,
a VM that shares this machine's root over 9p, an unknown host or
hypervisor). A VM may migrate itself: its stage carries on in the guest.
Standard library only, like `phalanx-sync`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from phalanx.host.syncclient import EXIT_NO_AGENT, EXIT_USAGE, request

EXIT_REFUSED = 1
DEFAULT_TIMEOUT = 300.0  # a migration under TCG, disks mirrored to another hypervisor
ANSWER_MARGIN = 30.0  # the coordinator's own wait is `timeout`: its answer comes after


def ask(message: dict[str, Any], timeout: float) -> tuple[bool, str]:
    """Send one request; (done, what was done or why not). Raises OSError
    (no agent) and TimeoutError."""
    answer = request({"op": "vm", **message, "timeout": timeout}, timeout + ANSWER_MARGIN)
    if answer.get("ok"):
        return True, str(answer.get("value") or "")
    return False, str(answer.get("error") or "refused")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phalanx-vm", description="Live-migrate a VM of this run (qemu hosts only)."
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    migrate = actions.add_parser("migrate", help="move a VM to a new QEMU, the guest carrying on")
    migrate.add_argument("host", nargs="?", metavar="HOST", help="default: this host")
    migrate.add_argument("--to", metavar="HYPERVISOR", help="another hypervisor, by name")
    migrate.add_argument("--mode", choices=("tcp", "unix"), default="tcp")
    migrate.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds (default {DEFAULT_TIMEOUT:g})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0 < args.timeout <= 3600:
        parser.print_usage(sys.stderr)
        print("phalanx-vm: --timeout is between 0 and 3600 seconds", file=sys.stderr)
        return EXIT_USAGE
    message = {"host": args.host, "to": args.to, "mode": args.mode}
    try:
        done, said = ask(message, args.timeout)
    except TimeoutError:
        print(f"phalanx-vm: no answer within {args.timeout + ANSWER_MARGIN:g}s", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:
        print(f"phalanx-vm: cannot reach the agent: {exc}", file=sys.stderr)
        return EXIT_NO_AGENT
    if not done:
        print(f"phalanx-vm: {said}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"phalanx-vm: {said}", flush=True)
    return 0


def entry() -> None:
    sys.exit(main(sys.argv[1:]))
