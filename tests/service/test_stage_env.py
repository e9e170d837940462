"""What a stage of a service-run `provider: local` cluster sees of the
service: nothing of its environment. A stage prints its own environment and
its agent's (as /proc shows it), and neither the output a viewer reads nor
the reports carry the service's secrets."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.service.test_serve import make_repo, start, stop, user_token, wait_run

SECRET = "smtp-password-not-for-stages"
PROBE = """\
env
p=$$
while [ "$p" -gt 1 ]; do
  if tr '\\0' ' ' < /proc/$p/cmdline | grep -q 'phalanx.host --coordinator'; then
    echo AGENT-ENV; tr '\\0' '\\n' < /proc/$p/environ; break
  fi
  p=$(awk '/^PPid:/{print $2}' /proc/$p/status)
done
"""


@pytest.mark.parametrize("provider", ["local", "netns"])
def test_a_stage_sees_a_minimal_environment_and_none_of_the_services(
    tmp_path: Path, provider: str
) -> None:
    if provider == "netns" and (os.geteuid() != 0 or shutil.which("ip") is None):
        pytest.skip("netns hosts need root and iproute2 (CI installs it)")
    repo = make_repo(tmp_path / "defs")
    if provider == "netns":
        (repo / "clusters" / "one.yaml").write_text(
            f"name: one\nprovider: netns\nhosts:\n  - {{name: h1.t.test, ip: 10.{os.getpid() % 200}.77.2}}\n"
        )
    case = repo / "test-suites" / "probe" / "tc" / "a"
    case.mkdir(parents=True)
    (case / "run.sh").write_text(PROBE)
    (repo / "test-suites" / "probe" / "suite.yaml").write_text("cluster: one\ntests: [a]\n")
    served = start(
        tmp_path,
        repo,
        tmp_path / "data",
        env={"PHALANX_SMTP__PASSWORD": SECRET, "SERVICE_ONLY": SECRET},
    )
    try:
        token = user_token(served, "otto", "operator")
        with served.client(token) as client:
            run = client.post("/api/suites/probe/runs").json()["id"]
            document = wait_run(client, run, ("passed", "failed", "error"))
            assert document["status"] == "passed", document
            output = client.get(
                f"/api/runs/{run}/output",
                params={"case": "a", "stage": "run", "host": "h1.t.test"},
            ).text
    finally:
        stop(served)
    stage_env, _, agent_env = output.partition("AGENT-ENV\n")
    assert agent_env, output  # the stage found its agent and read its environment
    names = {line.split("=", 1)[0] for line in stage_env.splitlines() if "=" in line}
    assert {"PATH", "HOME", "PHALANX_WORKDIR", "PHALANX_FUNCTIONS"} <= names, names
    assert "SERVICE_ONLY" not in names and "PHALANX_SMTP__PASSWORD" not in names
    assert SECRET not in output
    (folder,) = (tmp_path / "data" / "runs").iterdir()
    for report in ("results.json", "report.html"):
        assert SECRET not in (folder / report).read_text(), report
    assert json.loads((folder / "results.json").read_text())["status"] == "passed"
