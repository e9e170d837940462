"""The process-driving edge: `ProcessTest` starts the processes its config
names, turns what they do into events, runs timers, and ends the test.

```yaml
test-object-config:
    reactor-timeout: 30          # seconds; the test fails if it is still going
    processes:
        - name: server
          command: './server.sh'   # run by /bin/sh, cwd = the test's folder
          exit-code: 0             # expected; `any` to accept every code
```

The test ends when a module stops it (`stop_test`, `fail`), when the reactor
times out, or when every process has exited and no timer is pending. It is
marked passed when it ends without a failure or a timeout; it passes only if
it was marked passed and no fail token is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phalanx.kinds.declarative.events import Event, ProcessExited, ProcessOutput, TestStarted
from phalanx.kinds.declarative.tokens import FailTokens, Token, verdict

DEFAULT_REACTOR_TIMEOUT = 30.0
KILL_GRACE = 2.0


class ProcessTest:
    """The test object. Modules receive it and use the public methods."""

    def __init__(self, config: Any, test_dir: Path, out: Callable[[str], None] | None = None):
        config = config or {}
        if not isinstance(config, dict):
            raise ValueError("the test object's config must be a mapping")
        self.test_dir = test_dir
        self.reactor_timeout = float(config.get("reactor-timeout", DEFAULT_REACTOR_TIMEOUT))
        self.process_specs: list[dict[str, Any]] = list(config.get("processes") or [])
        self.tokens = FailTokens()
        self.passed = False
        self.failed: list[str] = []
        self._out = out or _print
        self._subscribers: list[Callable[[Event], None]] = []
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._busy: set[asyncio.Task[None]] = set()  # readers, timers, waiters
        self._timers: set[asyncio.TimerHandle] = set()
        self._done: asyncio.Event | None = None
        self._expected_exit: dict[str, int | None] = {}
        self._stopping = False

    # --- for modules ----------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        self._subscribers.append(callback)

    def create_fail_token(self, message: str) -> Token:
        return self.tokens.create(message)

    def remove_fail_token(self, token: Token) -> None:
        self.tokens.remove(token)

    def set_passed(self, passed: bool) -> None:
        self.passed = passed

    def log(self, message: str) -> None:
        self._out(f"[logger] {message}")

    def fail(self, message: str) -> None:
        self.failed.append(message)
        self.passed = False
        self.stop_test(passed=False)

    def stop_test(self, passed: bool = True) -> None:
        if self._done is not None and not self._done.is_set():
            if passed and not self.failed:
                self.passed = True
            self._done.set()

    def start_process(self, name: str, command: str, exit_code: int | None = 0) -> None:
        """Run `command` under /bin/sh in the test's folder; its output lines
        and its exit become events. `exit_code` None: any exit is fine."""
        self._expected_exit[name] = exit_code
        task = asyncio.get_running_loop().create_task(self._run_process(name, command))
        self._track(task)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> None:
        """Call `callback` after `seconds`; a pending timer keeps the test going."""
        handles: list[asyncio.TimerHandle] = []

        def fire() -> None:
            self._timers.discard(handles[0])
            try:
                callback()
            finally:
                self._check_idle()

        handles.append(asyncio.get_running_loop().call_later(seconds, fire))
        self._timers.add(handles[0])

    # --- the run -------------------------------------------------------------

    async def run(self) -> tuple[bool, list[str]]:
        self._done = asyncio.Event()
        self._emit(TestStarted())
        for spec in self.process_specs:
            expected = spec.get("exit-code", 0)
            self.start_process(
                str(spec["name"]), str(spec["command"]), None if expected == "any" else expected
            )
        self._check_idle()
        try:
            await asyncio.wait_for(self._done.wait(), self.reactor_timeout)
        except TimeoutError:
            self.failed.append(f"reactor timed out after {self.reactor_timeout:g}s")
            self.passed = False
        await self._stop_everything()
        passed, reasons = verdict(self.passed and not self.failed, self.tokens)
        return passed, [*self.failed, *[r for r in reasons if r not in self.failed]]

    def _emit(self, event: Event) -> None:
        for callback in list(self._subscribers):
            callback(event)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._busy.add(task)
        task.add_done_callback(self._untrack)

    def _untrack(self, task: asyncio.Task[None]) -> None:
        self._busy.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.fail(f"internal error: {task.exception()!r}")
        self._check_idle()

    def _check_idle(self) -> None:
        """Nothing running and nothing scheduled: nothing else can happen."""
        if self._done is None or self._done.is_set():
            return
        if not self._busy and not self._timers:
            self.stop_test(passed=True)

    async def _run_process(self, name: str, command: str) -> None:
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            cwd=self.test_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._processes[name] = process
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._out(f"[{name}] {line}")
            self._emit(ProcessOutput(name, line))
        code = await process.wait()
        code = 128 - code if code < 0 else code
        self._out(f"[{name}] exited with {code}")
        expected = self._expected_exit.get(name)
        if expected is not None and code != expected and not self._stopping:
            self.failed.append(f"process {name} exited with {code}, expected {expected}")
        self._emit(ProcessExited(name, code))

    async def _stop_everything(self) -> None:
        self._stopping = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        running = [p for p in self._processes.values() if p.returncode is None]
        for p in running:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        if running:
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in running], timeout=KILL_GRACE
            )
            for p in running:
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
            if pending:
                await asyncio.wait(pending, timeout=KILL_GRACE)
        for task in list(self._busy):
            task.cancel()
        if self._busy:
            await asyncio.wait(list(self._busy), timeout=KILL_GRACE)


def end_group() -> None:
    """When this program leads its own process group (the runner started it
    so), end every other member: grandchildren the processes left behind."""
    if os.getpgrp() != os.getpid():
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(0, signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
