"""Bringing up one SSH host: cold (the remote has no agent: copy the
wheelhouse, make a venv, install) and warm (the agent's install marker
matches: log in, start the agent).

The host is a throwaway OpenSSH server in a network namespace of its own
with a user of its own (tests/providers/sshd.py; needs root, iproute2 and
openssh-server). A bring-up is timed from `SshProvider.up` to the agent
connected to the coordinator through its reverse forward; `down` is timed
apart. The wheelhouse is built before (once per phalanx version and
source), and its build time is reported on its own.

No target is set by the issue; anchors: an `ssh host true` round trip on
loopback is ~0.1 s; pip installing the same wheels into a fresh venv is
most of a cold bring-up.

    .venv/bin/python bench/providers_ssh.py [--warm 5]

`bench/providers.py` calls `ssh_bring_up()`.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.providers.sshd

from tests.providers.sshd import skip_reason, throwaway_sshd

from phalanx.coordinator.runs import open_coordinator
from phalanx.model import Host
from phalanx.providers import wheelhouse as wh
from phalanx.providers.base import AgentSpec
from phalanx.providers.ssh import SshProvider


@dataclass(frozen=True)
class SshTimes:
    wheelhouse: float  # seconds to build the wheelhouse (a fresh cache)
    cold: float  # seconds to an agent connected, nothing on the remote yet
    warm: float  # median, the agent installed already
    down: float  # median seconds of `down`


async def _bring_up(host: Host, root: Path, wheel_cache: Path) -> tuple[float, float, bool]:
    provider = SshProvider(root, "bench", wheel_cache=wheel_cache)
    async with open_coordinator(heartbeat_timeout=10) as coordinator:
        token = coordinator.tokens.issue(host.name)
        started = time.perf_counter()
        try:
            await provider.up([AgentSpec(host, coordinator.agent_url, token)])
            installed = provider.remotes[host.name].installed
            missing = await coordinator.hub.wait_connected([host.name], 120)
            up = time.perf_counter() - started
            if missing:
                raise SystemExit(f"the agent of {host.name} did not connect")
        finally:
            coordinator.hub.shutdown([host.name])
            stopping = time.perf_counter()
            await provider.down()
            down = time.perf_counter() - stopping
    return up, down, installed


def ssh_bring_up(warm: int = 5) -> SshTimes:
    """Cold and warm bring-up times of one SSH host (see the module's doc)."""
    reason = skip_reason()
    if reason is not None:
        raise SystemExit(f"cannot start an SSH host here: {reason}")
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-ssh-") as tmp, throwaway_sshd() as lab:
        root, cache = Path(tmp), Path(tmp) / "wheelhouse"
        started = time.perf_counter()
        wh.wheelhouse(wh.Target(sys.version_info[:2], platform.machine()), cache)
        built = time.perf_counter() - started
        cold, down, installed = asyncio.run(_bring_up(lab.host(), root / "cold", cache))
        assert installed, "the first bring-up must install the agent"
        ups, downs = [], [down]
        for i in range(warm):
            up, down, installed = asyncio.run(_bring_up(lab.host(), root / f"warm{i}", cache))
            assert not installed, "a warm bring-up must not install again"
            ups.append(up)
            downs.append(down)
        return SshTimes(built, cold, statistics.median(ups), statistics.median(downs))


def report(times: SshTimes) -> str:
    return "\n".join(
        [
            "one SSH host (sshd in a netns), agent connected through the reverse forward",
            f"  wheelhouse build (once per version): {times.wheelhouse:6.2f} s",
            f"  cold bring-up (copy + venv + pip):   {times.cold:6.2f} s",
            f"  warm bring-up (median):              {times.warm:6.2f} s "
            f"({times.cold / times.warm:.1f}x faster than cold)",
            f"  down (median):                       {times.down:6.2f} s",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm", type=int, default=5, help="warm bring-ups to time")
    args = parser.parse_args()
    print(report(ssh_bring_up(args.warm)))


if __name__ == "__main__":
    main()
