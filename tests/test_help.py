"""`phalanx --help` and every command's help, as a user reads them: each
command's line is a whole sentence, and the exit codes name all five."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

from phalanx.cli import parser


def _choices(top: argparse.ArgumentParser, path: str = "phalanx") -> Iterator[tuple[str, str]]:
    """(command path, its one-line help) for every command and subcommand."""
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", helps.get(name, "")
                yield from _choices(sub, f"{path} {name}")


def test_every_command_line_is_a_whole_sentence() -> None:
    found = dict(_choices(parser()))
    assert {"phalanx cleanup", "phalanx image build", "phalanx token create"} <= set(found)
    cut = {name: text for name, text in found.items() if not text.rstrip().endswith((".", ".)"))}
    assert cut == {}
    assert found["phalanx cleanup"].endswith("container hosts' containers and volumes.")
    assert "root disk" in found["phalanx image build"]


def test_the_exit_codes_include_130() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "Exit codes: 0 passed, 1 a test failed, 2 bad definitions or usage, 3 an" in text
    assert "130 cancelled (Ctrl-C or SIGTERM)." in text
