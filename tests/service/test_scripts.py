"""Suite files for hosts (XrdTest's /showScript, /downloadScript): which
paths are inside the repo, and `phalanx run`'s hosts fetching them from its
embedded coordinator as `phalanx serve`'s do (tests/service/test_serve.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from phalanx.coordinator.scripts import inside


def test_only_regular_files_inside_the_repo_are_found(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "utils").mkdir(parents=True)
    (repo / "utils" / "a.sh").write_text("echo a\n")
    (tmp_path / "secret").write_text("no\n")
    (repo / "utils" / "out").symlink_to(tmp_path / "secret")
    (repo / "utils" / "in").symlink_to(repo / "utils" / "a.sh")
    assert inside(repo, "utils/a.sh") == (repo / "utils" / "a.sh").resolve()
    assert inside(repo, "utils/in") == (repo / "utils" / "a.sh").resolve()
    for refused in ("utils/out", "../secret", "utils/../../secret", "/etc/passwd", "utils",
                    "", "utils/missing", "utils\\a.sh", "x" * 300):  # fmt: skip
        assert inside(repo, refused) is None, refused


def test_the_hosts_of_phalanx_run_fetch_files_of_its_repo(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "clusters").mkdir(parents=True)
    (repo / "clusters" / "one.yaml").write_text("name: one\nhosts:\n  - {name: h1.t.test}\n")
    (repo / "utils").mkdir()
    (repo / "utils" / "helper.sh").write_text("echo a shared helper\n")
    case = repo / "test-suites" / "fetch" / "tc" / "a"
    case.mkdir(parents=True)
    url = "@proto@://@coordinator@:@port@"
    (case / "run.sh").write_text(
        f"curl -sf {url}/showScript/utils/helper.sh | sh\n"
        f"curl -sf {url}/downloadScript/utils/helper.sh -o got.sh && cat got.sh\n"
        f"echo outside $(curl -s --path-as-is -o /dev/null -w '%{{http_code}}' "
        f"{url}/showScript/../clusters/../../etc/passwd)\n"
        # XrdTest's ts_example fetches a helper its master had and runs it:
        # a file the repo lacks must stop the script, saying so.
        f"curl -sSO {url}/showScript/utils/get_latest.py; "
        f"{sys.executable} get_latest.py 2>&1 | grep -o 'phalanx: .*' || true\n"
    )
    (repo / "test-suites" / "fetch" / "suite.yaml").write_text("cluster: one\ntests: [a]\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", str(repo / "test-suites" / "fetch"),
         "--plain", "--json", "out.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=clean,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    (stage,) = [s for s in report["cases"][0]["stages"] if s["name"] == "run"]
    assert stage["hosts"][0]["output_tail"].splitlines() == [
        "a shared helper",
        "echo a shared helper",
        "outside 404",
        "phalanx: no file 'utils/get_latest.py' in the suite's repo",
    ]
