"""Take a secret out of what /proc shows of this process.

A token handed to a daemon in its environment stays readable, for as long
as it runs, in /proc/PID/environ: by every process of the same user,
the stages it runs included. That file shows the block the kernel copied
at exec; removing the variable from `os.environ` does not touch it. The
block is this process's own memory, so it is overwritten in place, through
/proc/self/mem, as `set_cmdline` (host/zygote.py) does for the command line.
"""

from __future__ import annotations

import contextlib
import os


def forget_env(name: str) -> None:
    """Remove `name` from this process's environment and blank its value
    in the block /proc shows. Best effort: no /proc (not Linux), nothing."""
    os.environ.pop(name, None)
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        # Fields 50 and 51 of stat (env_start, env_end), counted after "comm".
        start, end = int(fields[47]), int(fields[48])
        key = name.encode() + b"="
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            block = mem.read(end - start)
            at = 0
            for entry in block.split(b"\0"):
                if entry.startswith(key):
                    mem.seek(start + at + len(key))
                    mem.write(b"\0" * (len(entry) - len(key)))
                at += len(entry) + 1
