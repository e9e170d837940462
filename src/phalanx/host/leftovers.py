"""`python -m phalanx.host.leftovers PGID WORKDIR`: end what an agent left
on its host and remove its working directory. A remote provider (ssh) runs
it on the host after the agent's shutdown: the agent's own group, the
stage groups its ledger names, every process carrying its folder's mark."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from pathlib import Path

from phalanx.host.process import end_marked, group_alive, ledger_path, read_ledger, signal_group
from phalanx.host.workdir import WORKDIR_MARK, socket_dir


def end_leftovers(pgid: int, workdir: Path) -> None:
    if pgid > 1 and group_alive(pgid):
        signal_group(pgid, signal.SIGKILL)
    for group in read_ledger(ledger_path(workdir)):
        if group_alive(group):
            signal_group(group, signal.SIGKILL)
    asyncio.run(end_marked(WORKDIR_MARK, str(workdir), grace=0))
    shutil.rmtree(socket_dir(workdir), ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0].isdigit():
        print("usage: python -m phalanx.host.leftovers PGID WORKDIR", file=sys.stderr)
        return 2
    end_leftovers(int(argv[0]), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
