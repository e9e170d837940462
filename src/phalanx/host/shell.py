"""The `shell` runner: a stage script run in its own process group.

Scripts without a shebang, or with a bash/sh one, run under `-e` (XrdTest's
contract: a failing command fails the stage unless wrapped in `assert_fail`).
Other shebangs are executed as they are. stderr goes to stdout.
"""

from __future__ import annotations

import os
import shlex

from phalanx.host.command import run_command
from phalanx.host.context import RunnerContext
from phalanx.tasks import Outcome, ShellTask

INLINE_LIMIT = 64 * 1024  # longer scripts go to a file (one argument may hold 128 KiB)
_SHELLS = {"bash", "sh", "dash", "zsh", "ksh"}


def interpreter(text: str) -> list[str] | None:
    """The shell (with its shebang arguments and -e) that runs `text`, or
    None when its shebang names something else, to be executed as it is."""
    first = text.split("\n", 1)[0]
    words = shlex.split(first[2:].strip()) if first.startswith("#!") else []
    if not words:
        return ["bash", "-e"]
    program, args = words[0], words[1:]
    name = os.path.basename(program)
    if name == "env" and args:
        program, args = args[0], args[1:]
        name = os.path.basename(program)
    return [program, "-e", *args] if name in _SHELLS else None


def command_for(ctx: RunnerContext, text: str, name: str) -> list[str]:
    shell = interpreter(text)
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
    return await run_command(ctx, command_for(ctx, task.script, task.origin or "stage"))
