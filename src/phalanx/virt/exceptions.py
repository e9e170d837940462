"""What a VM test raises to say how it ended, as avocado's
`avocado.core.exceptions` gives them: a test that raises `TestFail` (or
fails an assertion) failed; `TestCancel` cancels it; anything else,
`TestError` included, is an error of the test."""

from __future__ import annotations


class TestBaseException(Exception):
    """The base of the statuses a test can raise."""

    status = "error"


class TestFail(TestBaseException, AssertionError):
    """The test found what it checks to be wrong."""

    status = "failed"


class TestError(TestBaseException):
    """The test could not do its job (its setup, the VM, the guest)."""

    status = "error"


class TestCancel(TestBaseException):
    """The test does not apply here; reported as skipped with the reason."""

    status = "skipped"


class TestSkipError(TestCancel):
    """avocado's older name for a cancel."""


class CmdError(Exception):
    """A command run in the guest (`remote.run`) ended with a non-zero
    status and `ignore_status` was not given; `result` is its CmdResult."""

    def __init__(self, command: str, result: object) -> None:
        self.command = command
        self.result = result
        status = getattr(result, "exit_status", None)
        stderr = str(getattr(result, "stderr", "")).strip()
        detail = f": {stderr.splitlines()[-1]}" if stderr else ""
        super().__init__(f"command {command!r} failed with exit status {status}{detail}")
