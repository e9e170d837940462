"""How a stage's process starts: the same whether it is spawned in this
process's working directory (posix_spawn, as a daemon agent does: it works
in its workdir) or in another one (Popen). Real processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from phalanx.host.command import run_command
from phalanx.host.context import RunnerContext
from phalanx.host.process import GroupLedger, spawn
from phalanx.tasks import Outcome


@pytest.fixture(params=["in this process's directory", "in another directory"])
def workdir(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    if request.param == "in this process's directory":
        monkeypatch.chdir(folder)
    return folder


def context(workdir: Path, out: list[bytes], env: dict[str, str] | None = None) -> RunnerContext:
    return RunnerContext(
        stage_id="s",
        scope="r:1:case",
        env=dict(os.environ) if env is None else env,
        cwd=workdir,
        scratch_root=workdir.parent / "scratch",
        timeout=30,
        output=out.append,
        ledger=GroupLedger(workdir.parent / "groups"),
    )


async def run(
    workdir: Path, command: list[str], env: dict[str, str] | None = None
) -> tuple[Outcome, str]:
    out: list[bytes] = []
    outcome = await run_command(context(workdir, out, env), command)
    return outcome, b"".join(out).decode()


async def test_it_runs_in_the_workdir_with_stdin_empty_and_stderr_merged(workdir: Path) -> None:
    outcome, text = await run(workdir, ["sh", "-c", "pwd; cat; echo to-stderr >&2"])
    assert outcome == Outcome(exit_code=0)
    assert text.splitlines() == [str(workdir), "to-stderr"]


async def test_it_leads_a_session_of_its_own(workdir: Path) -> None:
    out: list[bytes] = []
    child = spawn(["sleep", "30"], workdir, dict(os.environ), out.append)
    try:
        # Both ways of starting it are taken (posix_spawn cannot change directory).
        assert (child.popen is None) == (Path.cwd() == workdir)
        assert os.getsid(child.pid) == child.pid
        assert os.getpgid(child.pid) == child.pid
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        await child.exited
    assert child.returncode == -signal.SIGKILL


async def test_sigpipe_is_not_ignored_in_it(workdir: Path) -> None:
    # Python ignores SIGPIPE; a shell pipeline relies on its writer dying of it.
    outcome, text = await run(workdir, ["cat", "/proc/self/status"])
    ignored = int(
        next(line for line in text.splitlines() if line.startswith("SigIgn:")).split()[1], 16
    )
    assert outcome.exit_code == 0
    assert not ignored & (1 << (signal.SIGPIPE - 1))


async def test_a_program_is_found_on_the_stages_path(workdir: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "phalanx-test-hello"
    program.write_text("#!/bin/sh\necho hello from $0\nexit 3\n")
    program.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}")
    outcome, text = await run(workdir, ["phalanx-test-hello"], env)
    assert outcome.exit_code == 3
    assert text == f"hello from {program}\n"


async def test_a_missing_program_is_the_outcomes_error_naming_it(workdir: Path) -> None:
    outcome, _ = await run(workdir, ["phalanx-no-such-program"])
    assert outcome.exit_code is None
    assert outcome.error is not None
    assert "cannot start phalanx-no-such-program" in outcome.error
    assert "No such file or directory" in outcome.error


async def test_a_death_by_signal_is_reported_as_a_shell_would(workdir: Path) -> None:
    outcome, _ = await run(workdir, ["sh", "-c", "kill -TERM $$"])
    assert outcome.signal == signal.SIGTERM
    assert outcome.exit_code == 128 + signal.SIGTERM
