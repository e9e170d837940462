"""A host session for the machine the coordinator runs on, without an agent
process: the agent's own runners are called in this process's event loop.

For local single-host work (test trees) this is the agent minus the wire:
same runners, same process groups, same results; none of the per-stage
messages, which on a 1 ms test would cost more than the test.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from phalanx.engine.session import CollectedLog, StageOrder, StageReport
from phalanx.host.context import RunnerContext, set_signal
from phalanx.host.process import SCOPE_MARK, GroupLedger
from phalanx.host.runners import execute
from phalanx.host.sandbox import Sandboxes


class InProcessSession:
    def __init__(self, name: str, workdir: Path, sandboxes: Sandboxes, ledger: GroupLedger) -> None:
        self.name = name
        self.workdir = workdir
        self.sandboxes = sandboxes
        self.ledger = ledger
        self.running: dict[str, RunnerContext] = {}

    async def run_stage(self, order: StageOrder, on_output: Callable[[bytes], None]) -> StageReport:
        started = datetime.now(UTC)
        context = RunnerContext(
            stage_id=order.stage_id,
            scope=order.scope,
            env={**order.env, SCOPE_MARK: order.scope},
            cwd=self.workdir,
            scratch_root=self.sandboxes.root,
            timeout=order.timeout,
            output=on_output,
            ledger=self.ledger,
            sandboxes=self.sandboxes,
        )
        self.running[order.stage_id] = context
        try:
            outcome = await execute(order.task, context)
        finally:
            del self.running[order.stage_id]
        return StageReport(outcome, started, datetime.now(UTC))

    def cancel(self, stage_id: str) -> None:
        if (context := self.running.get(stage_id)) is not None:
            set_signal(context.cancelled)

    async def collect_logs(self, stage_id: str) -> list[CollectedLog]:
        return []
