"""A phalanx plug-in as a separately installed distribution ships it (the
tests install it as `phalanx-demo`; docs/plugins.md walks through it).

It adds all four things a plug-in can:

- a case kind, `demo-stamp`: each host of the case stamps the case's `word`
  in its working folder; the case passes when every host says it did;
- its task type, `demo-stamp`, which is what crosses the wire to a host;
- the runner of that task type, which the host's agent runs;
- a provider, `demo-twins`: local agent processes, like `provider: local`,
  that keeps a log of what the coordinator asked of it (`twins.log`).

Its entry points (entry_points.txt, or a pyproject.toml's
`[project.entry-points."phalanx.kinds"]` and so on):

    [phalanx.kinds]
    demo-stamp = phalanx_demo:STAMP
    [phalanx.tasks]
    demo-stamp = phalanx_demo:StampTask
    [phalanx.runners]
    demo-stamp = phalanx_demo:run_stamp
    [phalanx.providers]
    demo-twins = phalanx_demo:TwinsProvider
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from phalanx.host.context import RunnerContext
from phalanx.kinds.base import CaseSpec, OptionError, StageContext, judge_exit
from phalanx.model import Case, Host, Status
from phalanx.providers.base import AgentSpec, Capabilities, ProviderSetup
from phalanx.providers.local import LocalProvider
from phalanx.tasks import Outcome, Task

STAMP_FILE = "stamps.txt"


@dataclass(frozen=True)
class StampTask(Task):
    type: ClassVar[str] = "demo-stamp"
    version: ClassVar[int] = 1

    word: str
    host: str  # the host the coordinator meant it for


async def run_stamp(task: StampTask, ctx: RunnerContext) -> Outcome:
    """On the host: the word appended to the host's stamp file."""
    with (ctx.cwd / STAMP_FILE).open("a", encoding="utf-8") as stamps:
        stamps.write(f"{task.word} {task.host}\n")
    ctx.output(f"stamped {task.word!r} on {task.host}\n".encode())
    return Outcome(exit_code=0, data={"stamped": task.word, "on": task.host})


class Stamp:
    name = "demo-stamp"
    options = frozenset({"word"})

    def prepare(self, spec: CaseSpec) -> dict[str, Any]:
        word = spec.options.get("word")
        if not isinstance(word, str) or not word.isalpha():
            raise OptionError(f"must be a word of letters, not {word!r}", "word")
        return {"word": word}

    def stages(self, case: Case) -> tuple[str, ...]:
        return ("run",)

    def task(self, ctx: StageContext) -> Task | None:
        if ctx.case is None:
            return None
        return StampTask(word=ctx.case.options["word"], host=ctx.host.name)

    def judge(self, ctx: StageContext, outcome: Outcome) -> tuple[Status, str | None]:
        status, reason = judge_exit(outcome)
        if status is not Status.PASSED or ctx.case is None:
            return status, reason
        wanted = {"stamped": ctx.case.options["word"], "on": ctx.host.name}
        if outcome.data != wanted:
            return Status.FAILED, f"the host stamped {outcome.data!r}, not {wanted!r}"
        return Status.PASSED, None


STAMP = Stamp()


class TwinsProvider:
    """Local agent processes (`provider: local`'s), and a line in
    `twins.log`, beside the hosts' folders, for each thing asked of it."""

    def __init__(self, setup: ProviderSetup) -> None:
        self.local = LocalProvider(setup.root)
        self.log = setup.root / "twins.log"
        self.cluster = setup.cluster.name

    @property
    def listen_address(self) -> str | None:
        return self.local.listen_address

    def capabilities(self) -> Capabilities:
        # Processes on one network stack: nothing to break, move, revert or keep.
        return Capabilities.none("demo-twins hosts (local processes)")

    def _say(self, line: str) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a", encoding="utf-8") as log:
            log.write(line + "\n")

    async def open(self) -> None:
        self._say(f"open {self.cluster}")
        await self.local.open()

    def addresses(self, hosts: list[Host]) -> dict[str, str]:
        return self.local.addresses(hosts)

    def diskmounts(self, host: Host) -> str:
        return self.local.diskmounts(host)

    async def up(self, specs: list[AgentSpec]) -> None:
        self._say("up " + " ".join(spec.host.name for spec in specs))
        await self.local.up(specs)

    async def down(self, lost: Collection[str] = ()) -> None:
        self._say("down")
        await self.local.down(lost)

    async def close(self) -> None:
        self._say("close")
        await self.local.close()


def stamps(host_folder: Path) -> list[str]:
    """What a host's runner stamped (for the tests)."""
    return (host_folder / STAMP_FILE).read_text(encoding="utf-8").splitlines()
