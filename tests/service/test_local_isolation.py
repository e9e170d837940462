"""A stage of a service-run `provider: local` cluster cannot reach the
service's data. The attack of the issue: write a user into
`$PHALANX_WORKDIR/../../../../phalanx.db`. The working directory is outside
the data folder, which is its owner's only; and a service running as root
runs the agents as another user (`local_agent_user`), who can neither read
nor write the data folder nor read the service's /proc.

The service starts its local agents with its own interpreter, so that user
must be able to run it. A checkout's venv made by a Python under root's home
(CI's pyenv under /root, 0700) is not; the separate-user test then serves
with an interpreter `nobody` can run (this machine's own Python of the same
version), given the checkout venv's packages: the service and its agents are
the same code either way."""

from __future__ import annotations

import os
import pwd
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.providers.agentenv import UnusableUser, agent_user
from tests.service.test_serve import make_repo, start, stop, user_token, wait_run

# What the attack looks for in its own environment: the service's secrets.
SECRET = "smtp-secret-never-in-a-stage"

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
if env | grep -q @secret@; then echo "was given the service's secret"; fi
echo done
"""


def _attack(
    tmp_path: Path, agent_user: str = "nobody", python: str = sys.executable
) -> tuple[list[str], Path]:
    data = tmp_path / "data"
    repo = make_repo(tmp_path / "defs")
    case = repo / "test-suites" / "attack" / "tc" / "a"
    case.mkdir(parents=True)
    (repo / "test-suites" / "attack" / "suite.yaml").write_text("cluster: one\ntests: [a]\n")
    env = {"PHALANX_LOCAL_AGENT_USER": agent_user, "PHALANX_SMTP__PASSWORD": SECRET}
    served = start(tmp_path, repo, data, env=env, python=python)
    try:
        (case / "run.sh").write_text(
            ATTACK.replace("@data@", str(data.resolve()))
            .replace("@serve@", str(served.proc.pid))
            .replace("@secret@", SECRET)
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
    assert "was given the service's secret" not in lines, lines
    assert (data.stat().st_mode & 0o077) == 0  # the data folder is its owner's only
    assert not workdir.exists()  # the service removed its hosts' folders when it stopped


def _runs_as(user: pwd.struct_passwd, python: str, code: str) -> bool:
    try:
        subprocess.run(
            [python, "-c", code], user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd="/",
            env={"PATH": "/usr/bin:/bin"}, capture_output=True, timeout=60, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    return True


@pytest.fixture(scope="module")
def nobodys_python() -> Iterator[str]:
    """An interpreter user `nobody` can run phalanx with: this one, or a
    venv (made once for the module, in a folder everyone may read) of this
    machine's Python of the same version that reads the checkout venv's
    packages. Skips, saying why, where there is none."""
    if os.geteuid() != 0:
        pytest.skip("the service switches users only when it runs as root")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this machine has no user nobody")
    if _runs_as(nobody, sys.executable, "import phalanx.host.zygote"):
        yield sys.executable
        return
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    if system is None or not _runs_as(nobody, system, "pass"):
        pytest.skip(f"{sys.executable} is not nobody's to run, and nobody can run no {version}")
    folder = Path(tempfile.mkdtemp(prefix="phalanx-nobodys-python-"))
    try:
        folder.chmod(0o755)
        subprocess.run(
            [system, "-m", "venv", "--without-pip", str(folder / "venv")],
            capture_output=True, timeout=120, check=True,
        )  # fmt: skip
        python = str(folder / "venv" / "bin" / "python")
        packages = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip()  # fmt: skip
        # addsitedir, not a bare path: the venv's own .pth files (the
        # editable install of this checkout) are read too.
        (Path(packages) / "checkout-venv.pth").write_text(
            "".join(f"import site; site.addsitedir({d!r})\n" for d in site.getsitepackages())
        )
        if not _runs_as(nobody, python, "import phalanx.host.zygote"):
            pytest.skip(f"nobody cannot read this checkout or its venv ({site.getsitepackages()})")
        yield python
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_stage_of_a_root_service_runs_as_another_user_who_cannot_read_its_data(
    tmp_path: Path, nobodys_python: str
) -> None:
    try:
        agent_user("nobody", nobodys_python)
    except UnusableUser as exc:
        pytest.fail(f"the agents cannot run as nobody with {nobodys_python}: {exc}")
    lines, _ = _attack(tmp_path, python=nobodys_python)
    assert lines[0] == f"uid {pwd.getpwnam('nobody').pw_uid}", lines
    assert lines[2:] == ["relative-done", "done"], lines  # nothing read, written, listed or given
