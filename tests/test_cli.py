"""The `phalanx` command as a user types it: real processes, real exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from phalanx.host.process import marked

EXAMPLES = Path(__file__).parents[1] / "examples" / "repo"


def phalanx(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def only_run(cwd: Path) -> Path:
    (folder,) = (cwd / "phalanx-results").iterdir()
    return folder


def test_run_hello_exits_1_for_its_failing_case_and_writes_reports(tmp_path: Path) -> None:
    done = phalanx("run", str(EXAMPLES / "test-suites" / "hello"), "--plain", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    folder = only_run(tmp_path)
    results = json.loads((folder / "results.json").read_text())
    assert results["suite"] == "hello"
    assert {c["name"]: c["status"] for c in results["cases"]} == {
        "greet": "passed",
        "two_hosts_agree": "passed",
        "one_host_disagrees": "failed",
    }
    assert (folder / "junit.xml").is_file() and (folder / "results.tap").is_file()
    assert "one_host_disagrees" in done.stdout and "cli3.phalanx.test" in done.stdout


def test_a_repo_root_with_suite_and_case_runs_only_that_case(tmp_path: Path) -> None:
    done = phalanx(
        "run", str(EXAMPLES), "-s", "hello", "-t", "two_hosts_agree", "--plain", cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((only_run(tmp_path) / "results.json").read_text())
    assert [c["name"] for c in results["cases"]] == ["two_hosts_agree"]
    assert results["status"] == "passed"


def test_an_xrdtest_suite_runs_unchanged(tmp_path: Path) -> None:
    done = phalanx("run", str(EXAMPLES), "-s", "xrd_copy", "--plain", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((only_run(tmp_path) / "results.json").read_text())
    assert results["hosts"] == ["manager1.xrd.test", "ds1.xrd.test", "client1.xrd.test"]


def test_validate_and_list_a_good_repo(tmp_path: Path) -> None:
    done = phalanx("validate", str(EXAMPLES), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    suites = [p for p in (EXAMPLES / "test-suites").iterdir() if p.is_dir()]
    clusters = list((EXAMPLES / "clusters").iterdir())
    assert done.stdout.startswith(f"ok: {len(suites)} suites, {len(clusters)} clusters")
    listed = phalanx("list", str(EXAMPLES), cwd=tmp_path)
    assert listed.returncode == 0
    for name in ("hello", "client_server", "xrd_copy", "local4", "cluster_xrd"):
        assert name in listed.stdout


def test_validate_a_broken_repo_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    done = phalanx("validate", str(EXAMPLES / "broken"), cwd=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 10
    assert "10 problems found; nothing was run." in done.stderr


def test_nothing_starts_when_a_definition_or_case_is_bad(tmp_path: Path) -> None:
    bad = phalanx("run", str(EXAMPLES / "broken"), "-s", "bad_cron", cwd=tmp_path)
    assert bad.returncode == 2
    assert "bad_cron/suite.yaml:4: schedule:" in bad.stderr
    unknown = phalanx("run", str(EXAMPLES), "-s", "hello", "-t", "nope", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "no case 'nope'" in unknown.stderr
    assert not (tmp_path / "phalanx-results").exists()


def test_a_run_leaves_no_process_behind_whether_it_ran_or_its_definitions_were_bad(
    tmp_path: Path,
) -> None:
    # The agents' fork server starts before the suite is read: a run that
    # stops at its definitions ends it too.
    mark = f"phx-left-{os.urandom(4).hex()}"
    env = {**os.environ, "PHALANX_TEST_MARK": mark}
    runs = {
        0: [str(EXAMPLES), "-s", "hello", "-t", "greet", "--plain"],
        2: [str(EXAMPLES / "broken"), "-s", "bad_cron"],
    }
    for code, args in runs.items():
        done = subprocess.run(
            [sys.executable, "-m", "phalanx.cli", "run", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == code, done.stdout + done.stderr
        assert marked("PHALANX_TEST_MARK", mark) == []


def test_the_python_role_example_pairs_each_client_with_its_server(tmp_path: Path) -> None:
    done = phalanx("run", str(EXAMPLES), "-s", "python_roles", "--plain", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((only_run(tmp_path) / "results.json").read_text())
    (case,) = results["cases"]
    run = next(s for s in case["stages"] if s["name"] == "run")
    reported = {h["host"]: h["data"]["final_results"]["roletests"] for h in run["hosts"]}
    rounds = 200 * 64
    assert reported["srv1.phalanx.test"] == {"echoed_bytes": rounds}
    assert reported["srv2.phalanx.test"] == {"echoed_bytes": rounds}
    for client in ("cli1.phalanx.test", "cli2.phalanx.test"):
        assert reported[client]["rounds"] == 200 and reported[client]["rtt_us"] > 0
    assert "host results" in done.stdout


def test_tree_options_on_a_suite_are_refused_not_ignored(tmp_path: Path) -> None:
    done = phalanx(
        "run", str(EXAMPLES / "test-suites" / "hello"), "-j", "2", "--pcap", cwd=tmp_path
    )
    assert done.returncode == 2
    assert "-j/--jobs, --pcap apply to test trees" in done.stderr
    assert not (tmp_path / "phalanx-results").exists()


def test_usage_errors_exit_2_and_help_names_every_command(tmp_path: Path) -> None:
    bare = phalanx(cwd=tmp_path)
    assert bare.returncode == 2 and "usage: phalanx" in bare.stderr
    helped = phalanx("--help", cwd=tmp_path)
    assert helped.returncode == 0
    for command in ("run", "validate", "list", "results", "replay", "agent"):
        assert f"    {command} " in helped.stdout
    assert phalanx("run", cwd=tmp_path).returncode == 2  # no PATH
    assert phalanx("run", ".", "--number", "x", cwd=tmp_path).returncode == 2
    agent = phalanx("agent", "--help", cwd=tmp_path)
    assert agent.returncode == 0 and "--coordinator" in agent.stdout


def test_bad_option_values_are_usage_errors_before_anything_starts(tmp_path: Path) -> None:
    hello = str(EXAMPLES / "test-suites" / "hello")
    for option, value, says in [
        ("--heartbeat-timeout", "0", "must be more than 0 seconds, not 0"),
        ("--heartbeat-timeout", "-1", "must be more than 0 seconds, not -1"),
        ("--connect-timeout", "0", "must be more than 0 seconds, not 0"),
        ("--connect-timeout", "-3", "must be more than 0 seconds, not -3"),
        ("--connect-timeout", "soon", "'soon' is not a number of seconds"),
        ("-j", "0", "must be 1 or more, not 0"),
    ]:
        done = phalanx("run", hello, option, value, cwd=tmp_path)
        assert done.returncode == 2, (option, value, done.stdout, done.stderr)
        assert says in done.stderr, done.stderr
    assert not (tmp_path / "phalanx-results").exists()


def test_an_agent_with_an_unreadable_token_file_says_so_in_one_line(tmp_path: Path) -> None:
    done = phalanx(
        "agent",
        "--coordinator",
        "ws://127.0.0.1:9/agent",
        "--name",
        "h1",
        "--token-file",
        str(tmp_path / "nonexist"),
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"phalanx agent: cannot read the token file {tmp_path / 'nonexist'}: "
        f"[Errno 2] No such file or directory: '{tmp_path / 'nonexist'}'"
    ]


def test_a_broken_cluster_is_reported_once_however_many_suites_use_it(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "clusters").mkdir(parents=True)
    (repo / "clusters" / "lab.yaml").write_text("name: lab\n")  # no hosts
    for suite in ("one", "two", "three"):
        folder = repo / "test-suites" / suite
        (folder / "tc" / "c").mkdir(parents=True)
        (folder / "suite.yaml").write_text("cluster: lab\ntests: [c]\n")
        (folder / "tc" / "c" / "run.sh").write_text("true\n")
    done = phalanx("validate", str(repo), cwd=tmp_path)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert sum("lab.yaml:1: hosts: missing" in line for line in lines) == 1
    assert sum("cluster 'lab' does not load (1 problem in" in line for line in lines) == 3
    assert f"{len(lines)} problems found; nothing was run." in done.stderr


def test_running_a_repo_without_a_suite_names_the_suites_to_pick_from(tmp_path: Path) -> None:
    done = phalanx("run", str(EXAMPLES), cwd=tmp_path)
    assert done.returncode == 2
    assert (
        "a definitions repo: pick a suite with -s "
        "(suites: client_server, hello, netns_lab, over_ssh, python_roles, walks, xrd_copy)"
    ) in done.stderr


def test_list_on_a_repo_where_nothing_loads_prints_the_problems_not_an_empty_table(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    (repo / "test-suites" / "s").mkdir(parents=True)
    (repo / "test-suites" / "s" / "suite.yaml").write_text("cluster: nowhere\ntests: [c]\n")
    done = phalanx("list", str(repo), cwd=tmp_path)
    assert done.returncode == 2
    assert "suites" not in done.stdout and "cluster" not in done.stdout
    assert "suite.yaml:1: cluster: unknown cluster 'nowhere'" in done.stderr


def test_validate_warns_about_tags_no_host_fills_and_strict_makes_them_problems(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    (repo / "clusters").mkdir(parents=True)
    (repo / "clusters" / "lab.yaml").write_text("name: lab\nhosts: [h1.lab.test, h2.lab.test]\n")
    folder = repo / "test-suites" / "s"
    (folder / "tc" / "c").mkdir(parents=True)
    (folder / "suite.yaml").write_text(
        "cluster: lab\ntests: [c]\ntags: {greeting: hi}\ninitialize: echo @greting@\n"
    )
    run_sh = folder / "tc" / "c" / "run.sh"
    run_sh.write_text(
        "echo @slavename@ @greeting@ @host:h2@ @host:h1.lab.test@\n"
        "echo @nosuchtag@ mail me at someone@example.com\n"
        "ping @host:nosuch@\n"
    )
    done = phalanx("validate", str(repo), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: suite.initialize (inline): @greting@ is filled by no host of the suite",
        # named relative to where the user stands, as every message names paths
        "warning: repo/test-suites/s/tc/c/run.sh:2: @nosuchtag@ is filled by no host of the suite",
        "warning: repo/test-suites/s/tc/c/run.sh:3: @host:nosuch@ is filled by no host of the suite",
    ]
    strict = phalanx("validate", "--strict", str(repo), cwd=tmp_path)
    assert strict.returncode == 2
    assert "3 problems found; nothing was run." in strict.stderr


def test_a_problem_is_printed_as_written_not_read_as_markup(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "clusters").mkdir(parents=True)
    (repo / "clusters" / "m.yaml").write_text("name: m\nhosts: [h1]\n")
    (repo / "test-suites" / "s").mkdir(parents=True)
    (repo / "test-suites" / "s" / "suite.yaml").write_text('cluster: m\ntests: ["[bold]x"]\n')
    done = phalanx("validate", str(repo), cwd=tmp_path)
    assert done.returncode == 2
    assert "tests.[bold]x: case '[bold]x' has no folder" in done.stderr


# --- output: a closed pipe, huge lines, raw bytes, escapes (issue 9) ---------------


def one_case_suite(root: Path, script: str, hosts: int = 1) -> Path:
    """A repo with one suite of one case whose run stage is `script`."""
    names = "".join(f"  - name: h{i}.phalanx.test\n" for i in range(hosts))
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "c.yaml").write_text(f"name: c\nhosts:\n{names}")
    suite = root / "test-suites" / "s"
    (suite / "tc" / "only").mkdir(parents=True)
    (suite / "suite.yaml").write_text("name: s\ncluster: c\ntests: [only]\n")
    (suite / "tc" / "only" / "run.sh").write_text(script)
    return suite


def test_a_reader_that_leaves_early_stops_the_console_not_the_run(tmp_path: Path) -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "phalanx.cli", "run", str(EXAMPLES / "test-suites" / "hello"),
         "-v", "--plain"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert run.stdout is not None and run.stderr is not None
    # `| head -3`: a reader that takes three lines and leaves.
    head = [run.stdout.readline() for _ in range(3)]
    run.stdout.close()
    stderr = run.stderr.read().decode()
    assert run.wait(timeout=120) == 1, stderr  # the run's own: one case fails
    assert all(line.endswith(b"\n") for line in head)
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    results = json.loads((only_run(tmp_path) / "results.json").read_text())
    assert {c["name"]: c["status"] for c in results["cases"]} == {
        "greet": "passed",
        "two_hosts_agree": "passed",
        "one_host_disagrees": "failed",
    }
    assert (only_run(tmp_path) / "junit.xml").is_file()


def test_a_run_started_with_stdout_closed_runs_and_writes_its_reports(tmp_path: Path) -> None:
    suite = one_case_suite(tmp_path / "repo", "echo hello\n")
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", str(suite), "-v", "--plain"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120,
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    results = json.loads((only_run(tmp_path) / "results.json").read_text())
    assert results["status"] == "passed"


def test_a_50_mb_line_is_stored_whole_and_shown_cut_with_its_size(tmp_path: Path) -> None:
    size = 50 * 1024 * 1024
    suite = one_case_suite(tmp_path / "repo", f"head -c {size} /dev/zero | tr '\\0' x\n")
    done = phalanx("run", str(suite), "-v", "--plain", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "agent lost" not in done.stdout + done.stderr
    output = only_run(tmp_path) / "cases" / "only" / "run" / "h0.phalanx.test.log"
    assert output.stat().st_size == size
    shown = next(line for line in done.stdout.splitlines() if line.startswith("h0.phalanx.test| "))
    assert shown.endswith(f"… [{size:,} bytes]") and len(shown) < 1000


def test_raw_bytes_are_kept_on_disk_and_replaced_only_in_reports(tmp_path: Path) -> None:
    suite = one_case_suite(tmp_path / "repo", "printf 'caf\\351 \\377\\n'; exit 1\n")
    done = phalanx("run", str(suite), "--plain", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    folder = only_run(tmp_path)
    output = folder / "cases" / "only" / "run" / "h0.phalanx.test.log"
    assert output.read_bytes() == b"caf\xe9 \xff\n"
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    host = results["cases"][0]["stages"][0]["hosts"][0]
    assert host["output"] == "cases/only/run/h0.phalanx.test.log"
    assert host["output_tail"] == "caf\ufffd \ufffd\n" and host["output_size"] == 7
    assert "caf\ufffd \ufffd" in (folder / "junit.xml").read_text(encoding="utf-8")
    # The failure line shows the host's last lines and where all of it is.
    assert "    | caf\ufffd \ufffd" in done.stdout
    assert f"    output: {output.relative_to(tmp_path)}" in done.stdout


def test_escape_sequences_never_reach_the_terminal_raw(tmp_path: Path) -> None:
    script = "printf '\\033]0;PWNED\\007hello \\033[31mred\\033[0m\\n'\n"
    suite = one_case_suite(tmp_path / "repo", script)
    done = phalanx("run", str(suite), "-v", "--plain", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "h0.phalanx.test| hello red" in done.stdout
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert "PWNED" not in done.stdout


def test_messages_name_paths_relative_to_where_the_user_stands(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    one_case_suite(repo, "true\n")
    done = phalanx("run", "repo", cwd=tmp_path)
    assert done.returncode == 2
    assert "error: repo: a definitions repo: pick a suite with -s" in done.stderr
    assert str(tmp_path) not in done.stderr
    ran = phalanx("run", "repo/test-suites/s", "--plain", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    folder = only_run(tmp_path)
    assert f"results: {folder.relative_to(tmp_path)}" in ran.stdout


def test_the_coordinators_warnings_are_stamped_like_every_plain_line(tmp_path: Path) -> None:
    probe = (
        "import logging\n"
        "from phalanx.cli import _log_with_time\n"
        "_log_with_time(); _log_with_time()\n"
        "logging.getLogger('phalanx.coordinator').warning('agent h1 lost: no heartbeat for 10s')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d\d\d agent h1 lost: no heartbeat for 10s\n", done.stderr
    ), done.stderr


def test_a_tree_run_whose_reader_leaves_early_still_finishes(tmp_path: Path) -> None:
    tree = Path(__file__).parents[1] / "examples" / "tree"
    run = subprocess.Popen(
        [sys.executable, "-m", "phalanx.cli", "run", str(tree), "-v", "--results",
         str(tmp_path / "phalanx-results")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert run.stdout is not None and run.stderr is not None
    run.stdout.readline()
    run.stdout.close()
    stderr = run.stderr.read().decode()
    code = run.wait(timeout=120)
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    results = json.loads((only_run(tmp_path) / "results.json").read_text())
    assert results["status"] == "failed" and code == 1  # the run's own: tests/fail fails
    assert all(c["status"] != "pending" for c in results["cases"])


def _parsed(only: str | None, argv: list[str]) -> tuple[str, object]:
    """What the parser makes of argv: its output (help, errors) and its
    namespace, or the exit code it stopped with."""
    import contextlib
    import io

    from phalanx.cli import parser

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            result: object = vars(parser(only).parse_args(argv))
        except SystemExit as stop:
            result = stop.code
    return out.getvalue(), result


def test_the_run_command_parses_alone_as_it_does_among_all_commands() -> None:
    for argv in (
        ["run", "--help"],
        ["run", "tests", "-j", "2", "--results", "out", "-k", "a and not b", "-g", "x"],
        ["run", "repo", "-s", "suite", "--plain", "--provider", "netns"],
        ["run", "tests", "--bogus"],
        ["run"],
    ):
        assert _parsed("run", argv) == _parsed(None, argv), argv
