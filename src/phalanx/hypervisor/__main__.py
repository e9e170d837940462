"""`phalanx hypervisor`: the daemon's entry point and options."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from pathlib import Path

from phalanx import argtypes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="phalanx hypervisor",
        description="Run a coordinator's VMs on this machine (the qemu provider's clusters).",
    )
    parser.add_argument(
        "--coordinator", required=True, help="the coordinator: http(s)://HOST:PORT or ws(s)://…"
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        help="file holding the hypervisor's token (`phalanx token create NAME --hypervisor`; "
        "else $PHALANX_HYPERVISOR_TOKEN)",
    )
    parser.add_argument("--name", default=socket.gethostname(), help="default: the host name")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("phalanx-hypervisor"),
        help="where the VMs' consoles and logs go (default: ./phalanx-hypervisor)",
    )
    parser.add_argument("--ca", type=Path, metavar="FILE", help="verify a wss:// coordinator")
    parser.add_argument(
        "--give-up", type=argtypes.seconds, default=None, help="exit after S seconds unconnected"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    from phalanx.host.__main__ import Unusable, credentials, say_status
    from phalanx.host.endpoint import BadURL
    from phalanx.hypervisor.daemon import TOKEN_ENV, HypervisorDaemon, endpoint

    try:
        endpoint(args.coordinator)
    except BadURL as exc:
        parser.error(f"--coordinator: {exc}")

    try:
        token, context = credentials(args.token_file, TOKEN_ENV, args.ca)
    except Unusable as exc:
        print(f"phalanx hypervisor: {exc}", file=sys.stderr)
        return 2
    from phalanx.host.scrub import forget_env

    forget_env(TOKEN_ENV)  # what it starts must not find the token in /proc
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format=f"%(asctime)s hypervisor {args.name} %(levelname)s %(message)s",
    )
    status = say_status()
    daemon = HypervisorDaemon(
        args.coordinator,
        args.name,
        token,
        args.workdir.resolve(),
        ssl_context=context,
        give_up_after=args.give_up,
    )
    code = asyncio.run(_run(daemon))  # SIGINT and SIGTERM end it cleanly (see _run)
    status.info("hypervisor stopped (exit %d)", code)
    return code


async def _run(daemon: object) -> int:
    import signal

    from phalanx.hypervisor.daemon import HypervisorDaemon

    assert isinstance(daemon, HypervisorDaemon)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Stop cleanly: every VM ends before the daemon does.
        loop.add_signal_handler(signum, daemon.stop)
    return await daemon.run()


if __name__ == "__main__":
    sys.exit(main())
