"""The exit codes every `phalanx` command shares, and the one a run earns."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Not at run time: every command imports this module first thing, and
    # the model (its dataclasses) is a run's, imported once a suite loads.
    from phalanx.model import Status

EXIT_OK = 0  # everything passed or was skipped
EXIT_FAILED = 1  # a test failed
EXIT_DEFINITIONS = 2  # bad definitions or usage: nothing ran
EXIT_INFRASTRUCTURE = 3  # the machinery failed, not the tests
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


def for_status(status: Status) -> int:
    from phalanx.model import Status

    if status in (Status.PASSED, Status.SKIPPED):
        return EXIT_OK
    if status is Status.ERROR:
        return EXIT_INFRASTRUCTURE
    if status is Status.CANCELLED:  # only a cancel request (a signal) cancels a run
        return EXIT_INTERRUPTED
    return EXIT_FAILED
