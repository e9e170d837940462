"""`python -m phalanx.host`: the agent's own light entry point (the local
provider starts agents this way; `phalanx agent` calls the same `main`)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

from phalanx import argtypes, loops

CA_ENV = "PHALANX_AGENT_CA"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="phalanx agent", description="Run stages for a coordinator."
    )
    parser.add_argument(
        "--coordinator",
        required=True,
        metavar="URL",
        help="the coordinator: http(s)://HOST:PORT (as `phalanx submit` takes it) "
        "or its agent endpoint ws(s)://HOST:PORT/agent",
    )
    parser.add_argument("--name", required=True, help="this host's name in the cluster")
    parser.add_argument(
        "--workdir", type=Path, default=Path.cwd(), help="working directory of stages"
    )
    parser.add_argument(
        "--token-file", type=Path, help="file holding the agent's token (else $PHALANX_AGENT_TOKEN)"
    )
    parser.add_argument(
        "--ca",
        type=Path,
        default=os.environ.get(CA_ENV) or None,
        metavar="FILE",
        help=f"verify a wss:// coordinator with this CA certificate (else ${CA_ENV}, "
        "else the system's CAs)",
    )
    parser.add_argument(
        "--give-up",
        type=argtypes.seconds,
        default=None,
        help="exit after S seconds without a coordinator",
    )
    parser.add_argument(
        "--install-xrdtest-functions",
        action="store_true",
        help="install XrdTest's helper library at /etc/XrdTest/utils/functions.sh "
        "(needs write access there, e.g. root on a netns or VM host)",
    )
    parser.add_argument(
        "--label",
        dest="labels",
        type=label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label shown with this agent in the service's pages and API (repeatable)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    from phalanx.host.daemon import TOKEN_ENV, Agent, install_xrdtest_library
    from phalanx.host.scrub import forget_env
    from phalanx.wire.messages import MAX_LABELS

    if len(dict(args.labels)) > MAX_LABELS:
        parser.error(f"at most {MAX_LABELS} labels (the coordinator refuses more)")

    from phalanx.host.endpoint import AGENT_PATH, BadURL, websocket_url

    try:
        url = websocket_url(args.coordinator, AGENT_PATH)
    except BadURL as exc:
        parser.error(f"--coordinator: {exc}")

    try:
        token, context = credentials(args.token_file, TOKEN_ENV, args.ca)
    except Unusable as exc:
        print(f"phalanx agent: {exc}", file=sys.stderr)
        return 2
    # The token is in memory now; the stages must not find it in /proc.
    forget_env(TOKEN_ENV)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format=f"%(asctime)s {args.name} %(levelname)s %(message)s",
    )
    status = say_status()
    xrdtest_functions = None
    if args.install_xrdtest_functions:
        try:
            xrdtest_functions = install_xrdtest_library()
        except OSError as exc:
            print(f"phalanx agent: cannot install XrdTest's functions.sh: {exc}", file=sys.stderr)
            return 2
    agent = Agent(
        url,
        args.name,
        token,
        args.workdir.resolve(),
        give_up_after=args.give_up,
        xrdtest_functions=xrdtest_functions,
        ssl_context=context,
        labels=dict(args.labels),
        enter_workdir=True,
    )
    code = 130
    try:
        with said_on_sigterm(status, "agent"):
            code = loops.run(agent.run())
        return code
    except KeyboardInterrupt:
        return code
    finally:
        status.info("agent stopped (exit %d)", code)


def say_status() -> logging.Logger:
    """The daemons' status lines (connected, unreachable, stopped): shown
    without -v too, unlike the rest of their INFO log."""
    from phalanx.host.connection import STATUS

    STATUS.setLevel(logging.INFO)
    return STATUS


@contextlib.contextmanager
def said_on_sigterm(status: logging.Logger, who: str) -> Iterator[None]:
    """On SIGTERM, say so, then end as SIGTERM ends the process (what a
    provider that stops its agents relies on)."""

    def stop(signum: int, frame: object) -> None:
        status.info("%s stopped (SIGTERM)", who)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = key.strip(), value.strip()
    from phalanx.wire.messages import MAX_LABEL_KEY, MAX_LABEL_VALUE

    # The coordinator refuses a hello whose labels are past these bounds.
    if len(key) > MAX_LABEL_KEY or len(value) > MAX_LABEL_VALUE:
        raise argparse.ArgumentTypeError(
            f"a label's key is at most {MAX_LABEL_KEY} characters and its value "
            f"at most {MAX_LABEL_VALUE}, got {len(key)} and {len(value)}"
        )
    return key, value


class Unusable(Exception):
    """A token or CA file a daemon cannot use; the message says which and why."""


def credentials(
    token_file: Path | None, token_env: str, ca: Path | None
) -> tuple[str, ssl.SSLContext | None]:
    """What a daemon connecting out (`phalanx agent`, `phalanx hypervisor`)
    authenticates with: its token, from the file or else `$token_env`, and
    the TLS context that trusts `ca` (None: the system's CAs)."""
    try:
        token = token_file.read_text().strip() if token_file else os.environ.get(token_env, "")
    except (OSError, UnicodeDecodeError) as exc:
        raise Unusable(f"cannot read the token file {token_file}: {exc}") from None
    if not token:
        raise Unusable(f"no token (use --token-file or ${token_env})")
    if ca is None:
        return token, None
    try:
        return token, tls_client_context(ca)
    except (OSError, ValueError) as exc:
        raise Unusable(f"--ca {ca}: not a usable CA certificate ({exc})") from None


def tls_client_context(ca_file: Path) -> ssl.SSLContext:
    """Trust only `ca_file` and check the coordinator's name. A certificate
    in it that is not a CA's (the coordinator's own, pinned) is trusted as
    it stands: partial chains are allowed."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


if __name__ == "__main__":
    sys.exit(main())
