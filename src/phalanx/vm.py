"""A run's VMs moved from a Python test, as `phalanx-vm` moves them for scripts:

    import phalanx.vm

    phalanx.vm.migrate()                 # this host's VM, to a new QEMU beside it
    phalanx.vm.migrate("vm2", to="hv2")  # another host's, to another hypervisor

Each call returns once the guest runs at its destination (what was done, as
a line of text), and raises `VmError` saying why when it cannot be done
(hosts that are not VMs, a VM sharing this machine's root over 9p, an
unknown host or hypervisor). Standard library only: this runs in the test.
"""

from __future__ import annotations

from phalanx.host.vmclient import DEFAULT_TIMEOUT, ask

__all__ = ["VmError", "migrate"]


class VmError(RuntimeError):
    """The VM could not be moved; the message says why."""


def migrate(
    host: str | None = None,
    *,
    to: str | None = None,
    mode: str = "tcp",
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Live-migrate `host`'s VM (None: this host's) to a new QEMU on its
    hypervisor, or on the hypervisor named `to`; `mode`: tcp or unix."""
    if mode not in ("tcp", "unix"):
        raise VmError(f"phalanx.vm.migrate: mode {mode!r} is tcp or unix")
    done, said = ask({"host": host, "to": to, "mode": mode}, timeout)
    if not done:
        raise VmError(f"phalanx.vm.migrate: {said}")
    return said
