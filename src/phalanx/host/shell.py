"""The `shell` runner: a stage script run in its own process group.

A script without a shebang runs under the task's shell: `bash -e` for
phalanx's own suites (a failing command fails the stage unless wrapped in
`assert_fail`), `/bin/sh` without -e for XrdTest suites (as its slave ran
them), or what the suite's `shell:` says. A bash/sh shebang picks the
program and keeps the shell's `-e` (or its absence). Other shebangs are
executed as they are. stderr goes to stdout.
"""

from __future__ import annotations

import functools
import os
import shlex

from phalanx.host.command import run_command
from phalanx.host.context import RunnerContext
from phalanx.tasks import Outcome, ShellTask
from phalanx.tasks.shell import DEFAULT_SHELL

INLINE_LIMIT = 64 * 1024  # longer scripts go to a file (one argument may hold 128 KiB)
_SHELLS = {"bash", "sh", "dash", "zsh", "ksh"}


def interpreter(text: str, default: tuple[str, ...] = DEFAULT_SHELL) -> list[str] | None:
    """The shell (with its shebang arguments, and -e when `default` has it)
    that runs `text`, or None when its shebang names something else, to be
    executed as it is. `default` runs a script without a shebang."""
    shell = _interpreter(text.split("\n", 1)[0], default)
    return list(shell) if shell is not None else None


# Read once per first line, not at every stage that runs it.
@functools.lru_cache(maxsize=64)
def _interpreter(first: str, default: tuple[str, ...]) -> tuple[str, ...] | None:
    words = shlex.split(first[2:].strip()) if first.startswith("#!") else []
    if not words:
        return default
    program, args = words[0], words[1:]
    name = os.path.basename(program)
    if name == "env" and args:
        program, args = args[0], args[1:]
        name = os.path.basename(program)
    errexit = ["-e"] if "-e" in default[1:] else []
    return (program, *errexit, *args) if name in _SHELLS else None


def command_for(
    ctx: RunnerContext, text: str, name: str, default: tuple[str, ...] = DEFAULT_SHELL
) -> list[str]:
    shell = interpreter(text, default)
    if shell is not None and len(text) <= INLINE_LIMIT:
        # No file to write: one syscall-heavy step less on every barrier.
        return [*shell, "-c", text, name]
    script = ctx.scratch() / "script"
    script.write_text(text)
    if shell is not None:
        return [*shell, str(script)]
    script.chmod(0o755)
    return [str(script)]


async def run_shell(task: ShellTask, ctx: RunnerContext) -> Outcome:
    command = command_for(ctx, task.script, task.origin or "stage", task.shell or DEFAULT_SHELL)
    return await run_command(ctx, command)
