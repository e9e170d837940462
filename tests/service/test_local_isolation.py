"""A stage of a service-run `provider: local` cluster cannot reach the
service's data. The attack of the issue: write a user into
`$PHALANX_WORKDIR/../../../../phalanx.db`. The working directory is outside
the data folder, which is its owner's only; and a service running as root
runs the agents as another user (`local_agent_user`), who can neither read
nor write the data folder nor read the service's /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phalanx.providers.agentenv import UnusableUser, agent_user
from tests.service.test_serve import make_repo, start, stop, user_token, wait_run

ATTACK = """\
echo "uid $(id -u)"
echo "workdir $PHALANX_WORKDIR"
db="$PHALANX_WORKDIR/../../../../phalanx.db"
if [ -e "$db" ]; then echo "found $db"; fi
echo relative-done
if cat "@data@/phalanx.db" >/dev/null 2>&1; then echo "read the database"; fi
if [ -w "@data@/phalanx.db" ]; then echo "may write the database"; fi
if ls "@data@" >/dev/null 2>&1; then echo "listed the data folder"; fi
if tr '\\0' '\\n' 2>/dev/null </proc/@serve@/environ >/dev/null; then echo "read the service's environment"; fi
echo done
"""


def _attack(tmp_path: Path, agent_user: str = "nobody") -> tuple[list[str], Path]:
    data = tmp_path / "data"
    repo = make_repo(tmp_path / "defs")
    case = repo / "test-suites" / "attack" / "tc" / "a"
    case.mkdir(parents=True)
    (repo / "test-suites" / "attack" / "suite.yaml").write_text("cluster: one\ntests: [a]\n")
    served = start(tmp_path, repo, data, env={"PHALANX_LOCAL_AGENT_USER": agent_user})
    try:
        (case / "run.sh").write_text(
            ATTACK.replace("@data@", str(data.resolve())).replace("@serve@", str(served.proc.pid))
        )
        token = user_token(served, "otto", "operator")
        with served.client(token) as client:
            run = client.post("/api/suites/attack/runs").json()["id"]
            document = wait_run(client, run, ("passed", "failed", "error"))
            assert document["status"] == "passed", document
            output = client.get(
                f"/api/runs/{run}/output", params={"case": "a", "stage": "run", "host": "h1.t.test"}
            ).text
    finally:
        stop(served)
    lines = output.splitlines()
    assert lines[-1] == "done", output
    return lines, data


def test_a_stages_workdir_is_outside_the_closed_data_folder(tmp_path: Path) -> None:
    lines, data = _attack(tmp_path)
    workdir = Path(lines[1].removeprefix("workdir "))
    assert not workdir.resolve().is_relative_to(data.resolve()), lines
    assert lines[2] == "relative-done", lines  # ../../../../phalanx.db is not the database
    assert (data.stat().st_mode & 0o077) == 0  # the data folder is its owner's only
    assert not workdir.exists()  # the service removed its hosts' folders when it stopped


def test_a_stage_of_a_root_service_runs_as_another_user_who_cannot_read_its_data(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the service switches users only when it runs as root")
    try:
        agent_user("nobody")
    except UnusableUser as exc:
        pytest.skip(f"the agents cannot run as nobody on this machine: {exc}")
    lines, _ = _attack(tmp_path)
    assert lines[0] != "uid 0", lines
    assert lines[2:] == ["relative-done", "done"], lines  # nothing read, written or listed
