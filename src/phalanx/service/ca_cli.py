"""`phalanx ca init` and `phalanx ca issue NAME`: the command-line side of `service/ca.py`.

Registering the commands imports only argparse; `cryptography` is imported
when one of them runs, so other commands start as light as before.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phalanx.exits import EXIT_DEFINITIONS, EXIT_OK

# Beside the service's default data folder (`phalanx serve --data`).
DEFAULT_DIR = Path("phalanx-data") / "ca"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ca = commands.add_parser(
        "ca",
        help="Make a certificate authority and TLS certificates for the service.",
        description="A private CA for the coordinator's TLS; agents trust it with --ca FILE.",
    )
    ca_commands = ca.add_subparsers(dest="ca_command", metavar="COMMAND")
    ca_commands.required = True

    init = ca_commands.add_parser(
        "init",
        help="Make a CA: a key and a self-signed certificate.",
        description="Make a CA (ca.pem, and ca-key.pem readable by you only) in --dir. "
        "An existing CA is never overwritten.",
    )
    _dir_option(init)
    init.add_argument("--name", default="phalanx CA", help="the CA's common name")
    init.set_defaults(handler=ca_init)

    issue = ca_commands.add_parser(
        "issue",
        help="Make a certificate signed by the CA.",
        description="Make NAME.pem (certificate and chain) and NAME-key.pem signed by the CA "
        "in --dir. NAME is one of the certificate's names; add the others with --ip and --dns.",
    )
    issue.add_argument(
        "name", metavar="NAME", help="a host name or IP address, and the files' name"
    )
    _dir_option(issue)
    issue.add_argument(
        "--ip",
        action="append",
        default=[],
        metavar="IP",
        help="an IP address it is valid for (repeatable)",
    )
    issue.add_argument(
        "--dns",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name it is valid for (repeatable)",
    )
    issue.add_argument(
        "--days", type=int, default=None, metavar="N", help="days it is valid (default: 825)"
    )
    issue.add_argument(
        "--out", type=Path, metavar="DIR", help="write the files here (default: --dir)"
    )
    issue.set_defaults(handler=ca_issue)


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        metavar="DIR",
        help="the CA's folder (default: %(default)s)",
    )


def ca_init(args: argparse.Namespace) -> int:
    from phalanx.service.ca import CAError, init_ca

    try:
        made = init_ca(args.dir, common_name=args.name)
    except (CAError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DEFINITIONS
    print(f"CA certificate: {made.cert}  (give this file to agents: --ca)")
    print(f"CA key:         {made.key}  (secret; keep it here)")
    return EXIT_OK


def ca_issue(args: argparse.Namespace) -> int:
    from phalanx.service.ca import CERT_DAYS, CAError, issue

    if args.days is not None and args.days < 1:
        print("error: --days must be at least 1", file=sys.stderr)
        return EXIT_DEFINITIONS
    try:
        made = issue(
            args.dir,
            args.name,
            ips=args.ip,
            dns=args.dns,
            days=args.days or CERT_DAYS,
            out=args.out,
        )
    except (CAError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DEFINITIONS
    print(f"certificate: {made.cert}")
    print(f"key:         {made.key}  (secret)")
    return EXIT_OK
