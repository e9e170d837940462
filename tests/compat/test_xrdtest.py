"""A repo in XrdTest's own layout (written here in its format) works unchanged."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from phalanx.load.repo import find_suite, load_repo

CLUSTER = """\
from XrdTest.ClusterUtils import Cluster, Network, Host


def getCluster():
    cluster = Cluster("cluster_pair")
    cluster.network = Network()
    cluster.network.name = "net_pair"
    cluster.network.ip = "192.168.130.1"
    cluster.network.netmask = "255.255.255.0"
    cluster.network.DHCPRange = ("192.168.130.2", "192.168.130.254")
    cluster.addHosts([
        Host("srv1.pair.test", "192.168.130.3", mac="52:54:00:aa:bb:01"),
        Host("cli1.pair.test", "192.168.130.4", mac="52:54:00:aa:bb:02"),
    ])
    return cluster
"""

SUITE = """\
from XrdTest.TestUtils import TestSuite


def getTestSuite():
    ts = TestSuite("pair_suite")
    ts.clusters = ["cluster_pair"]
    ts.tests = ["copy"]
    ts.initialize = "file://suite_init.sh"
    ts.finalize = "file://suite_finalize.sh"
    ts.logs = []
    ts.alert_emails = []
    ts.alert_success = "NONE"
    ts.alert_failure = "NONE"
    return ts
"""


def xrdtest_repo(root: Path, scripts: dict[str, str] | None = None) -> Path:
    """A suite repo as XrdTest users keep it, `test-suites/utils/` included."""
    files = {
        "clusters/cluster_pair.py": CLUSTER,
        "test-suites/utils/fetch-build.py": "print('a helper, not a suite')\n",
        "test-suites/utils/README": "helpers used by the suites\n",
        "test-suites/pair_suite/test_suite.py": SUITE,
        "test-suites/pair_suite/suite_init.sh": "#!/bin/bash\necho init @slavename@\n",
        "test-suites/pair_suite/suite_finalize.sh": "#!/bin/bash\necho bye\n",
        "test-suites/pair_suite/tc/copy/init.sh": "#!/bin/bash\necho case init\n",
        "test-suites/pair_suite/tc/copy/run.sh": "#!/bin/bash\necho run\n",
    }
    files.update(scripts or {})
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def phalanx(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command, run in `cwd` (a test's tmp path: a run's results folder
    lands there, never in the checkout)."""
    return subprocess.run(
        [sys.executable, "-m", "phalanx", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


# item 6: a helper folder under test-suites/ is not a suite


def test_a_folder_without_a_suite_file_is_skipped_not_an_error(tmp_path: Path) -> None:
    repo = load_repo(xrdtest_repo(tmp_path))
    assert repo.errors == []
    assert list(repo.suites) == ["pair_suite"]
    assert repo.skipped == [tmp_path / "test-suites" / "utils"]


def test_validate_and_list_note_the_helper_folder_and_pass(tmp_path: Path) -> None:
    root = xrdtest_repo(tmp_path)
    validate = phalanx("validate", root, cwd=tmp_path)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "ok: 1 suite, 1 cluster" in validate.stdout
    assert "utils" in validate.stdout and "skipped" in validate.stdout
    listed = phalanx("list", root, cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "pair_suite" in listed.stdout
    assert "utils" in listed.stdout and "skipped" in listed.stdout


def test_the_suite_next_to_a_helper_folder_still_runs_by_name(tmp_path: Path) -> None:
    suite = find_suite(xrdtest_repo(tmp_path), "pair_suite")
    assert [c.name for c in suite.cases] == ["copy"]


# item 7: scripts run as XrdTest's slave ran them; `shell:` chooses


def test_an_xrdtest_suite_runs_scripts_with_sh_and_no_errexit(tmp_path: Path) -> None:
    suite = find_suite(xrdtest_repo(tmp_path), "pair_suite")
    assert suite.xrdtest
    assert suite.shell == ("/bin/sh",)


def test_a_yaml_suite_keeps_bash_e_and_may_choose_its_shell(tmp_path: Path) -> None:
    root = xrdtest_repo(tmp_path)
    folder = root / "test-suites" / "own"
    (folder / "tc" / "a").mkdir(parents=True)
    (folder / "tc" / "a" / "run.sh").write_text("true\n")
    (folder / "suite.yaml").write_text("cluster: cluster_pair\ntests: [a]\n")
    suite = find_suite(root, "own")
    assert not suite.xrdtest and suite.shell is None
    (folder / "suite.yaml").write_text("cluster: cluster_pair\ntests: [a]\nshell: sh\n")
    assert find_suite(root, "own").shell == ("sh",)
    (folder / "suite.yaml").write_text("cluster: cluster_pair\ntests: [a]\nshell: /bin/zsh -f\n")
    assert find_suite(root, "own").shell == ("/bin/zsh", "-f")


def test_an_xrdtest_suite_may_ask_for_bash_e(tmp_path: Path) -> None:
    asked = SUITE.replace("    ts.logs = []\n", '    ts.logs = []\n    ts.shell = "bash -e"\n')
    root = xrdtest_repo(tmp_path, {"test-suites/pair_suite/test_suite.py": asked})
    assert find_suite(root, "pair_suite").shell == ("bash", "-e")


def test_a_bad_shell_is_reported_with_file_line_and_key(tmp_path: Path) -> None:
    root = xrdtest_repo(tmp_path)
    folder = root / "test-suites" / "own"
    (folder / "tc" / "a").mkdir(parents=True)
    (folder / "tc" / "a" / "run.sh").write_text("true\n")
    (folder / "suite.yaml").write_text("cluster: cluster_pair\ntests: [a]\nshell: ''\n")
    (error,) = load_repo(root).errors
    assert (error.file, error.line, error.key) == (folder / "suite.yaml", 3, "shell")
    assert "must name a shell" in error.message


def test_without_errexit_a_failing_line_does_not_stop_the_script(tmp_path: Path) -> None:
    # What XrdTest users relied on: only the last command's status counts.
    root = xrdtest_repo(tmp_path)
    marker = tmp_path / "marker"
    (root / "test-suites/pair_suite/tc/copy/run.sh").write_text(
        f"false\necho still here > {marker}\n"
    )
    ran = phalanx("run", root, "-s", "pair_suite", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert marker.read_text() == "still here\n"


def test_a_phalanx_suite_still_stops_at_the_first_failing_line(tmp_path: Path) -> None:
    root = xrdtest_repo(tmp_path)
    folder = root / "test-suites" / "own"
    (folder / "tc" / "a").mkdir(parents=True)
    marker = tmp_path / "marker"
    (folder / "tc" / "a" / "run.sh").write_text(f"false\necho reached > {marker}\n")
    (folder / "suite.yaml").write_text("cluster: cluster_pair\ntests: [a]\n")
    ran = phalanx("run", root, "-s", "own", cwd=tmp_path)
    assert ran.returncode != 0
    assert not marker.exists()


def test_a_shebang_picks_the_program_and_the_suite_shell_picks_errexit() -> None:
    from phalanx.host.shell import interpreter

    assert interpreter("echo hi\n", ("/bin/sh",)) == ["/bin/sh"]
    assert interpreter("#!/bin/bash\necho hi\n", ("/bin/sh",)) == ["/bin/bash"]
    assert interpreter("#!/bin/bash\necho hi\n") == ["/bin/bash", "-e"]
    assert interpreter("echo hi\n") == ["bash", "-e"]
    assert interpreter("#!/usr/bin/python3\nprint(1)\n", ("/bin/sh",)) is None


# item 8: XrdTest's helper library, where its scripts source it from

INIT_WITH_FUNCTIONS = """\
#!/bin/bash
source /etc/XrdTest/utils/functions.sh

log "Initializing test suite on slave @slavename@" > {out}/init.log
"""

RUN_WITH_FUNCTIONS = """\
. /etc/XrdTest/utils/functions.sh
stamp ls {out} > {out}/stamp.log
run mkdir -p {out}/made
run "echo piped | tr a-z A-Z" > {out}/run.log
assert_fail rm {out}/non_existent
echo "errors reach stdout" >&2
log done
"""


def test_an_xrdtest_suite_sourcing_its_functions_runs_unchanged(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    scripts = {
        "test-suites/pair_suite/suite_init.sh": INIT_WITH_FUNCTIONS.format(out=out),
        "test-suites/pair_suite/tc/copy/run.sh": RUN_WITH_FUNCTIONS.format(out=out),
    }
    root = xrdtest_repo(tmp_path / "repo", scripts)
    ran = phalanx("run", root, "-s", "pair_suite", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    stamp = r"\[\d\d:\d\d:\d\d\] "
    # both hosts wrote the same file; the line names one of them
    assert re.fullmatch(
        stamp + r"Initializing test suite on slave (srv1|cli1)\.pair\.test\n",
        (out / "init.log").read_text(),
    )
    assert re.fullmatch(f"({stamp}\\S+\n)+", (out / "stamp.log").read_text())
    assert (out / "made").is_dir()
    assert (out / "run.log").read_text() == "PIPED\n"


def test_a_failing_run_or_a_succeeding_assert_fail_fails_the_stage(tmp_path: Path) -> None:
    for body in ("run false\necho unreachable\n", "assert_fail true\n"):
        script = "source /etc/XrdTest/utils/functions.sh\n" + body
        root = xrdtest_repo(
            tmp_path / str(len(body)), {"test-suites/pair_suite/tc/copy/run.sh": script}
        )
        ran = phalanx("run", root, "-s", "pair_suite", cwd=tmp_path)
        assert ran.returncode != 0, body
        assert "unreachable" not in ran.stdout


def test_the_source_line_is_pointed_at_the_agents_copy_only_in_xrdtest_suites() -> None:
    from phalanx.tags import xrdtest_sources

    assert xrdtest_sources("  source /etc/XrdTest/utils/functions.sh\n") == (
        '  . "${PHALANX_XRDTEST_FUNCTIONS:-/etc/XrdTest/utils/functions.sh}"\n'
    )
    assert xrdtest_sources('. "/etc/XrdTest/utils/functions.sh"; log x') == (
        '. "${PHALANX_XRDTEST_FUNCTIONS:-/etc/XrdTest/utils/functions.sh}"; log x'
    )
    # another file of that folder, or a mention, is left as written
    other = "source /etc/XrdTest/utils/functions.sh.bak\necho /etc/XrdTest/utils/functions.sh\n"
    assert xrdtest_sources(other) == other


def test_the_functions_tag_names_the_library_in_any_suite(tmp_path: Path) -> None:
    root = xrdtest_repo(tmp_path)
    folder = root / "test-suites" / "own"
    (folder / "tc" / "a").mkdir(parents=True)
    out = tmp_path / "tagged.log"
    (folder / "tc" / "a" / "run.sh").write_text(
        f'. @functions@\nlog tagged > {out}\n[ -f "$PHALANX_XRDTEST_FUNCTIONS" ]\n'
    )
    (folder / "suite.yaml").write_text("cluster: cluster_pair\ntests: [a]\n")
    ran = phalanx("run", root, "-s", "own", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert out.read_text().endswith("] tagged\n")


def test_the_agent_installs_the_library_where_xrdtest_scripts_look(tmp_path: Path) -> None:
    from phalanx.host.daemon import install_xrdtest_library

    path = install_xrdtest_library(tmp_path / "etc" / "XrdTest" / "utils" / "functions.sh")
    check = subprocess.run(
        ["sh", "-c", f". {path}; assert_fail false && log installed"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0
    assert check.stdout.endswith("] installed\n")


def test_installing_where_the_agent_may_not_write_raises(tmp_path: Path) -> None:
    import pytest

    from phalanx.host.daemon import install_xrdtest_library

    (tmp_path / "etc").write_text("a file, not a folder")
    with pytest.raises(OSError):
        install_xrdtest_library(tmp_path / "etc" / "XrdTest" / "utils" / "functions.sh")
