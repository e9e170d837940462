"""A shell on the guest over SSH (asyncssh): `vm.remote.run(cmd)` as
avocado's remote runner gives it: a CmdResult with `exit_status`, `stdout`
and `stderr`, and CmdError for a non-zero status unless `ignore_status`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from phalanx.virt.exceptions import CmdError, TestError

if TYPE_CHECKING:
    from phalanx.virt.loop import Loop

RUN_TIMEOUT = 60.0  # seconds, avocado's default for a remote command
CONNECT_ATTEMPT = 10.0  # seconds for one attempt while the guest boots
RETRY_EVERY = 1.0


@dataclass
class CmdResult:
    command: str
    exit_status: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0

    def __str__(self) -> str:
        return f"{self.command!r}: exit status {self.exit_status}"


@dataclass(frozen=True)
class Keys:
    """The client key phalanx logs in with and the host key it gave the
    guest (the only key the guest's sshd may show)."""

    client: Any  # asyncssh.SSHKey
    host: Any

    @classmethod
    def generate(cls) -> Keys:
        import asyncssh

        return cls(
            asyncssh.generate_private_key("ssh-ed25519"),
            asyncssh.generate_private_key("ssh-ed25519"),
        )

    def seed_files(self) -> dict[str, str | bytes]:
        return {
            "authorized_keys": self.client.export_public_key().decode(),
            "ssh_host_ed25519_key": self.host.export_private_key("openssh"),
        }


async def connect(
    port: int, keys: Keys, timeout: float, ended: Callable[[], str | None] = lambda: None
) -> Any:
    """An SSH connection to root on 127.0.0.1:`port`, retried until the
    guest's sshd answers or `timeout` passes; the host key is checked.
    `ended`: why the VM is gone (no use waiting on), or None."""
    import asyncssh

    deadline = time.monotonic() + timeout
    trusted: tuple[list[Any], list[Any], list[Any]] = ([keys.host.convert_to_public()], [], [])
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if (why := ended()) is not None:
            raise TestError(why)
        attempt = min(CONNECT_ATTEMPT, max(deadline - time.monotonic(), 0.1))
        try:
            return await asyncio.wait_for(
                asyncssh.connect(
                    "127.0.0.1",
                    port,
                    username="root",
                    client_keys=[keys.client],
                    known_hosts=trusted,
                    agent_path=None,
                    config=[],
                ),
                attempt,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise TestError(f"the guest showed a host key phalanx did not give it: {exc}") from exc
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            last = exc  # not up yet: QEMU's forward answers before sshd does
        await asyncio.sleep(RETRY_EVERY)
    raise TestError(f"no SSH login to the guest within {timeout:g}s (last: {last!r})")


class Remote:
    """A logged-in shell on the guest."""

    def __init__(self, loop: Loop, connection: Any, port: int) -> None:
        self._loop = loop
        self._connection = connection
        self.port = port
        self.closed = False

    def run(
        self, command: str, ignore_status: bool = False, timeout: float = RUN_TIMEOUT
    ) -> CmdResult:
        """Run `command` with the guest's shell; CmdError on a non-zero
        exit status unless `ignore_status`."""
        if self.closed:
            raise TestError("this login ended (the VM was migrated or powered off): login_remote()")
        result = self._loop.run(
            self._run(command, timeout), timeout + 5, f"remote command {command!r}"
        )
        if result.exit_status != 0 and not ignore_status:
            raise CmdError(command, result)
        return result

    async def _run(self, command: str, timeout: float) -> CmdResult:
        import asyncssh

        began = time.monotonic()
        try:
            done = await self._connection.run(command, check=False, timeout=timeout)
        except asyncssh.TimeoutError as exc:
            raise TestError(f"remote command {command!r} did not end within {timeout:g}s") from exc
        except (OSError, asyncssh.Error) as exc:
            raise TestError(
                f"remote command {command!r}: the SSH connection failed: {exc}"
            ) from exc
        return CmdResult(
            command=command,
            exit_status=done.exit_status,
            stdout=_text(done.stdout),
            stderr=_text(done.stderr),
            duration=time.monotonic() - began,
        )

    async def aclose(self) -> None:
        self.closed = True
        self._connection.close()
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(self._connection.wait_closed(), 5)


def _text(data: Any) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""
