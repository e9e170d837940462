"""One run's live migrations: the VMs its stages ask to move
(`phalanx-vm migrate`), one at a time, through the provider's `Migrating`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from phalanx.providers.base import FaultError, Migrated, Migrating, ProvisionError
from phalanx.wire.messages import VmMigrate, VmMigrated

MIGRATION_MARGIN = 30.0  # past a migration's own timeout: the provider's cleanup after one
NO_MIGRATION = "live migration needs VMs (provider: qemu); this run's hosts are not VMs"

log = logging.getLogger("phalanx.coordinator")


class RunMigrations:
    def __init__(
        self,
        migrator: Migrating | None,
        no_migration: str,
        names: Mapping[str, str],
        asking: Callable[[str, str], bool],
    ) -> None:
        """`migrator`: what moves the run's VMs (None: a request is refused
        with `no_migration`); `names`: every name a host answers to → its
        name; `asking(host, stage_id)`: whether that stage still runs."""
        self.migrator = migrator
        self.no_migration = no_migration
        self.names = names
        self.asking = asking
        self.lock = asyncio.Lock()  # one migration at a time

    async def answer(self, host: str, message: VmMigrate) -> VmMigrated:
        """Move the VM `host`'s stage asked to move; the stage's answer."""
        rid = message.request_id
        try:
            return VmMigrated(request_id=rid, detail=await self._migrate(host, message))
        except (ProvisionError, FaultError) as exc:
            return VmMigrated(request_id=rid, error=str(exc))
        except TimeoutError:
            within = message.timeout + MIGRATION_MARGIN
            return VmMigrated(request_id=rid, error=f"the migration did not end within {within:g}s")
        except Exception as exc:  # the provider's bug: the stage is told, the run goes on
            log.exception("a migration failed")
            return VmMigrated(request_id=rid, error=f"{type(exc).__name__}: {exc}")

    async def _migrate(self, host: str, message: VmMigrate) -> str:
        """Move one VM; what was done (ProvisionError: why not)."""
        if self.migrator is None:
            raise ProvisionError(self.no_migration)
        asked = message.host if message.host is not None else host
        target = self.names.get(asked)
        if target is None:
            known = ", ".join(sorted(set(self.names.values())))
            raise ProvisionError(f"no host {asked!r} in this run (its hosts: {known})")
        async with self.lock:
            if not self.asking(host, message.stage_id):
                raise ProvisionError("the stage that asked for it is over")
            done = await asyncio.wait_for(
                self.migrator.migrate_vm(
                    target, to=message.to, mode=message.mode, timeout=message.timeout
                ),
                message.timeout + MIGRATION_MARGIN,
            )
        return describe(done)


def describe(done: Migrated) -> str:
    """A migration as the stage that asked for it is told."""
    where = f"to hypervisor {done.hypervisor}" if done.moved else f"on {done.hypervisor}"
    downtime = f", QEMU downtime {done.downtime_ms} ms" if done.downtime_ms is not None else ""
    return f"{done.host} migrated {where} in {done.seconds:.2f}s{downtime}"
