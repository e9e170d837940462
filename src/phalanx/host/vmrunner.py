"""The `vm` runner: the VM test module runs in a child Python process of its
own (its own process group, like a `python` task), so a test that hangs
ends with its stage and its VMs with it. The child's module is
phalanx.virt.child: named here, not imported (the host does not depend on
the VM code)."""

from __future__ import annotations

from phalanx.host.context import RunnerContext
from phalanx.host.pyrunner import run_child
from phalanx.tasks import Outcome, VmTask


async def run_vm(task: VmTask, ctx: RunnerContext) -> Outcome:
    return await run_child(task, ctx, "phalanx.virt.child")
