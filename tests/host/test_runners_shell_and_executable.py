"""Two of the host's runners, run for real: the `shell` runner (which
shell runs a stage script, with or without `-e`, a shebang's program, a
script too long for one argument) and the `executable` runner (a tree
test's sandbox, environment, skips and unmet dependencies)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from phalanx.host.context import RunnerContext
from phalanx.host.process import GroupLedger
from phalanx.host.runners import execute
from phalanx.host.shell import INLINE_LIMIT, interpreter
from phalanx.tasks import ExecutableTask, Outcome, ShellTask
from tests.processes import gone

XRDTEST_SHELL = ("/bin/sh",)


def context(tmp_path: Path) -> tuple[RunnerContext, list[bytes]]:
    out: list[bytes] = []
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    ctx = RunnerContext(
        stage_id="r:1:case:run",
        scope="r:1:case",
        env=dict(os.environ),
        cwd=work,
        scratch_root=tmp_path / "scratch",
        timeout=30,
        output=out.append,
        ledger=GroupLedger(tmp_path / "groups"),
    )
    return ctx, out


async def run(tmp_path: Path, task: ShellTask | ExecutableTask) -> tuple[Outcome, str]:
    ctx, out = context(tmp_path)
    outcome = await execute(task, ctx)
    return outcome, b"".join(out).decode()


# --- shell --------------------------------------------------------------------------


async def test_a_failing_command_ends_a_phalanx_script_with_its_status(tmp_path: Path) -> None:
    outcome, said = await run(tmp_path, ShellTask(script="echo one\nfalse\necho two\n"))
    assert outcome.exit_code == 1
    assert said == "one\n"


async def test_an_xrdtest_script_goes_on_past_a_failing_command(tmp_path: Path) -> None:
    script = "echo one\nfalse\necho two\n"
    outcome, said = await run(tmp_path, ShellTask(script=script, shell=XRDTEST_SHELL))
    assert outcome.exit_code == 0
    assert said == "one\ntwo\n"


async def test_a_shell_shebang_picks_the_program_and_keeps_the_tasks_e(tmp_path: Path) -> None:
    script = '#!/usr/bin/env sh\necho "$0"\nfalse\necho after\n'
    outcome, said = await run(tmp_path, ShellTask(script=script, origin="tc/a/run.sh"))
    assert outcome.exit_code == 1  # -e from phalanx's default shell
    assert said == "tc/a/run.sh\n"  # $0 names where the script came from
    assert interpreter(script) == ["sh", "-e"]
    outcome, said = await run(tmp_path, ShellTask(script=script, shell=XRDTEST_SHELL))
    assert outcome.exit_code == 0 and said.endswith("after\n")


async def test_another_shebang_is_executed_as_it_is_from_the_stages_scratch(
    tmp_path: Path,
) -> None:
    script = f"#!{sys.executable}\nimport sys\nprint('python says', sys.argv[0])\nsys.exit(4)\n"
    outcome, said = await run(tmp_path, ShellTask(script=script))
    assert outcome.exit_code == 4
    written = tmp_path / "scratch" / "r_1_case_run" / "script"
    assert said == f"python says {written}\n"
    assert os.access(written, os.X_OK)


async def test_a_script_too_long_for_one_argument_runs_from_a_file(tmp_path: Path) -> None:
    filler = "# " + "x" * 78 + "\n"
    script = "echo start\n" + filler * (INLINE_LIMIT // len(filler) + 1) + "echo end\n"
    assert len(script) > INLINE_LIMIT
    outcome, said = await run(tmp_path, ShellTask(script=script))
    assert outcome.exit_code == 0 and said == "start\nend\n"
    assert (tmp_path / "scratch" / "r_1_case_run" / "script").read_text() == script


async def test_stderr_comes_with_stdout_in_the_order_written(tmp_path: Path) -> None:
    outcome, said = await run(tmp_path, ShellTask(script="echo out\necho err >&2\necho out2\n"))
    assert outcome.exit_code == 0 and said == "out\nerr\nout2\n"


# --- executable ---------------------------------------------------------------------


def tree_test(tmp_path: Path, name: str, body: str) -> Path:
    folder = tmp_path / "tests" / name
    folder.mkdir(parents=True)
    run_test = folder / "run-test"
    run_test.write_text("#!/bin/sh\n" + body)
    run_test.chmod(0o755)
    return folder


async def test_a_tree_test_runs_in_its_sandbox_with_its_names_and_its_env(
    tmp_path: Path,
) -> None:
    folder = tree_test(
        tmp_path,
        "net/ping",
        'echo "$PHALANX_TEST_NAME|$PHALANX_TEST_DIR|$PWD|$EXTRA"\n'
        'echo "$PHALANX_SANDBOX|$TMPDIR"\necho kept > "$PHALANX_SANDBOX/evidence"\n',
    )
    task = ExecutableTask(name="net/ping", dir=str(folder), env=(("EXTRA", "given"),))
    outcome, said = await run(tmp_path, task)
    assert outcome.exit_code == 0, said
    first, second = said.splitlines()
    assert first == f"net/ping|{folder}|{folder}|given"
    sandbox = tmp_path / "scratch" / "net_ping"
    assert second == f"{sandbox}|{sandbox}"
    assert (sandbox / "evidence").read_text() == "kept\n"  # a test's files stay


async def test_a_tree_test_that_leaves_nothing_leaves_no_sandbox(tmp_path: Path) -> None:
    folder = tree_test(tmp_path, "quiet", "exit 0\n")
    outcome, _ = await run(tmp_path, ExecutableTask(name="quiet", dir=str(folder)))
    assert outcome.exit_code == 0
    assert not (tmp_path / "scratch").exists()


async def test_a_skipped_test_and_one_with_an_unmet_dependency_do_not_run(
    tmp_path: Path,
) -> None:
    ran = tmp_path / "ran"
    folder = tree_test(tmp_path, "needs", f"touch {ran}\n")
    skipped = ExecutableTask(name="needs", dir=str(folder), skip="flaky on Tuesdays")
    outcome, _ = await run(tmp_path, skipped)
    assert outcome.data == {"skipped": "skip: flaky on Tuesdays"}
    missing = ExecutableTask(
        name="needs", dir=str(folder), dependencies=(("app", "no-such-program-here"),)
    )
    outcome, _ = await run(tmp_path, missing)
    assert outcome.data is not None and "unmet dependency" in outcome.data["skipped"]
    assert "no-such-program-here" in outcome.data["skipped"]
    assert not ran.exists()
    present = ExecutableTask(name="needs", dir=str(folder), dependencies=(("app", "sh"),))
    outcome, _ = await run(tmp_path, present)
    assert outcome.exit_code == 0 and ran.exists()


async def test_what_a_tree_test_left_in_its_group_ends_with_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon.pid"
    folder = tree_test(tmp_path, "leaves", f"sleep 300 &\necho $! > {pid_file}\nexit 0\n")
    outcome, _ = await run(tmp_path, ExecutableTask(name="leaves", dir=str(folder)))
    assert outcome.exit_code == 0
    assert gone(int(pid_file.read_text()), 30)
