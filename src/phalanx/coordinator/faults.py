"""One run's network faults: those its stages ask for (`phalanx-net`) and
its nemeses make, through the provider's `NetworkFaults`, one change of the
network at a time; and their healing when a case ends and when the run
does. The fleet sends a case's next stage only once the network is whole
again (`healed`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from phalanx.history.nemesis import Step
from phalanx.providers.base import FaultError, NetworkFaults
from phalanx.wire.messages import NetDone, NetFault

FAULT_TIMEOUT = 120.0  # seconds to make or heal one network fault

log = logging.getLogger("phalanx.coordinator")


class RunFaults:
    def __init__(
        self,
        faults: NetworkFaults | None,
        no_faults: str,
        names: Mapping[str, str],
        asking: Callable[[str, str], bool],
    ) -> None:
        """`faults`: how the run's network is broken (None: it cannot be, and
        a request is refused with `no_faults`); `names`: every name a host
        answers to → its name; `asking(host, stage_id)`: whether that stage
        still runs (a request from a stage that is over is refused)."""
        self.faults = faults
        self.no_faults = no_faults
        self.names = names
        self.asking = asking
        self.faulted = False  # a fault may hold: heal at the end of the case
        self.healing: asyncio.Future[str | None] | None = None  # why not healed, or None
        self.lock = asyncio.Lock()  # one change of the network at a time

    # --- a stage's requests ---------------------------------------------------------

    async def answer(self, host: str, message: NetFault) -> NetDone:
        """Make the fault `host`'s stage asked for; the stage's answer."""
        try:
            error = await self._make(host, message)
        except (FaultError, TimeoutError) as exc:
            error = str(exc) or f"no answer within {FAULT_TIMEOUT:g}s"
        except Exception as exc:  # the provider's bug: the stage is told, the run goes on
            log.exception("a network fault failed")
            error = f"{type(exc).__name__}: {exc}"
        return NetDone(request_id=message.request_id, error=error)

    async def _make(self, host: str, message: NetFault) -> str | None:
        """Apply one fault; None when it holds, else why not."""
        faults = self.faults
        if faults is None:
            return self.no_faults
        asked = [name for group in message.groups or [] for name in group]
        asked += [message.host] if message.host is not None else []
        unknown = [name for name in asked if name not in self.names]
        if unknown:
            known = ", ".join(sorted(set(self.names.values())))
            return f"no host {unknown[0]!r} in this run (its hosts: {known})"
        target = self.names[message.host] if message.host is not None else ""
        async with self.lock:
            if not self.asking(host, message.stage_id):
                return "the stage that asked for it is over"
            if message.action == "heal":
                await asyncio.wait_for(faults.heal(), FAULT_TIMEOUT)
                self.faulted = False
                return None
            self.faulted = True  # before: a fault half made is healed too
            match message.action:
                case "partition":
                    groups = [[self.names[n] for n in group] for group in message.groups or []]
                    await asyncio.wait_for(faults.partition(groups), FAULT_TIMEOUT)
                case "isolate":
                    await asyncio.wait_for(faults.isolate(target), FAULT_TIMEOUT)
                case "slow":
                    delay = message.delay or 0.0
                    await asyncio.wait_for(faults.slow(target, delay), FAULT_TIMEOUT)
        return None

    # --- a nemesis's steps -------------------------------------------------------------

    async def break_network(self, step: Step) -> None:
        if self.faults is None:
            raise FaultError(self.no_faults)
        async with self.lock:
            self.faulted = True
            if step.groups:
                groups = [[self.names[n] for n in group] for group in step.groups]
                await self.faults.partition(groups)
            elif step.fault.kind == "isolate-random":
                await self.faults.isolate(self.names[step.host])
            else:
                await self.faults.slow(self.names[step.host], step.delay)

    async def heal_network(self) -> None:
        if self.faults is None:
            raise FaultError(self.no_faults)
        async with self.lock:
            await self.faults.heal()
            self.faulted = False

    # --- healing --------------------------------------------------------------------

    def heal_soon(self) -> None:
        """Heal what this run's stages broke; the next stage waits for it."""
        if self.faults is None or not self.faulted:
            return
        if self.healing is not None and not self.healing.done():
            return  # under way, and it takes the lock after any fault being made
        self.healing = asyncio.ensure_future(self._heal(self.faults))

    async def _heal(self, faults: NetworkFaults) -> str | None:
        async with self.lock:
            try:
                await asyncio.wait_for(faults.heal(), FAULT_TIMEOUT)
            except (FaultError, TimeoutError) as exc:
                reason = str(exc) or f"no answer within {FAULT_TIMEOUT:g}s"
            except Exception as exc:  # the provider's bug: the run goes on, the stage says why
                log.exception("healing the network failed")
                reason = f"{type(exc).__name__}: {exc}"
            else:
                self.faulted = False
                return None
        return f"the network faults of the last case could not be healed: {reason}"

    async def healed(self) -> str | None:
        """Wait for a heal under way; None once the network is whole (or
        there is nothing to heal), else why it is not."""
        healing = self.healing
        if healing is None:
            return None
        reason = await asyncio.shield(healing)
        if reason is not None and self.healing is healing and not self.faulted:
            self.healing = None  # healed since, by a `phalanx-net heal`
            return None
        return reason

    async def heal_all(self) -> str | None:
        """At the run's end: heal whatever still holds; why not, or None."""
        self.heal_soon()
        reason = await self.healed()
        if reason is not None:
            log.warning("%s", reason)
        return reason
