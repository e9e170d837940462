"""A compose file as a cluster: the real multi-service file in compose/
runs unchanged on container hosts (its services' own processes, a build,
a healthcheck waited for, bind mounts, env files, network aliases), and
`phalanx validate` names the keys phalanx does not honour in one warning."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from phalanx.providers.containers import engine
from tests.providers.containers import image, needs_podman
from tests.providers.test_netns import _logs, _phalanx, _repo
from tests.providers.test_podman import _left

COMPOSE = Path(__file__).parent / "compose"
TAG = "localhost/phalanx-compose-test:latest"  # what the compose file names

CLUSTER = "name: c\ncompose: ../compose/compose.yaml\n"

LOOK = """\
#!/bin/bash
echo "hostname=$(hostname)"
echo "greeting=$GREETING from_file=$FROM_FILE"
python3 - <<'PY'
import socket, urllib.request
print("www says", urllib.request.urlopen("http://www:8080/index.html", timeout=5).read().decode().strip())
socket.create_connection(("cache.compose.test", 6379), timeout=5).close()
print("cache listens")
PY
cat /built 2>/dev/null || echo "not built here"
ls /scratch >/dev/null 2>&1 && echo "has scratch" || echo "no scratch"
"""


@needs_podman
def test_a_real_compose_file_runs_unchanged_as_a_cluster(tmp_path: Path) -> None:
    _compose_file_runs_unchanged(tmp_path)


@needs_podman
def test_through_dockers_cli_a_real_compose_file_runs_unchanged(
    tmp_path: Path, docker: dict[str, str]
) -> None:
    """With Docker's CLI as the engine: each service's own program waits
    for its network (plumbed after its container starts), its build is the
    engine's."""
    _compose_file_runs_unchanged(tmp_path, docker)


def _compose_file_runs_unchanged(tmp_path: Path, env: dict[str, str] | None = None) -> None:
    kind = engine()
    subprocess.run([kind.path, "tag", image(), TAG], check=True, timeout=60)
    shutil.copytree(COMPOSE, tmp_path / "compose")
    repo = _repo(tmp_path / "repo", CLUSTER, {"look": {"run.sh": LOOK}})
    shutil.move(tmp_path / "compose", repo / "compose")

    checked = _phalanx("validate", str(repo), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    warned = [line for line in checked.stderr.splitlines() if "does not honour" in line]
    assert len(warned) == 1, checked.stderr
    assert "services.cache.restart" in warned[0]

    done = _phalanx("run", str(repo), "-s", "s", "--plain", cwd=tmp_path, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "phalanx-results").iterdir()
    logs = _logs(run, "look")
    assert set(logs) == {"web", "cache.compose.test", "worker"}
    for name, log in logs.items():
        assert f"hostname={name}" in log, log
        assert "www says <h1>served by web</h1>" in log, log
        assert "cache listens" in log, log
    assert "greeting=hello from_file=from the env file" in logs["web"]
    assert "greeting= from_file=" in logs["cache.compose.test"]
    assert "built" in logs["worker"].splitlines() and "not built here" in logs["web"]
    assert "has scratch" in logs["web"] and "no scratch" in logs["worker"]
    assert _left(run.name) == []


def test_run_compose_takes_the_services_as_hosts_and_names_a_bad_files_line(
    tmp_path: Path,
) -> None:
    repo = _repo(tmp_path / "repo", "name: c\nhosts: [a.t]\n", {"ok": {"run.sh": "true\n"}})
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  web:\n    image: x\n    depends_on: [db]\n")
    done = _phalanx("run", str(repo), "-s", "s", "--compose", str(bad), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "compose.yaml:4: services.web.depends_on: no service 'db' in this file" in done.stderr
    assert not (tmp_path / "phalanx-results").exists()  # nothing ran


LOOK_AS_USER = """\
#!/bin/bash
echo "$(hostname) says $WORD as $(id -u):$(id -g)"
echo mine > mine && echo wrote
phalanx-sync done && echo synced
"""


@needs_podman
def test_run_compose_runs_a_suite_on_the_files_services(tmp_path: Path) -> None:
    kind = engine()
    subprocess.run([kind.path, "tag", image(), TAG], check=True, timeout=60)
    repo = _repo(
        tmp_path / "repo",
        "name: c\nhosts: [a.t]\n",
        {"look": {"run.sh": LOOK_AS_USER}},
    )
    file = tmp_path / "compose.yaml"
    file.write_text(
        f"services:\n  solo:\n    image: {TAG}\n    command: sleep infinity\n"
        "    environment: {WORD: hi}\n    user: '1000:1000'\n"
    )
    done = _phalanx(
        "run", str(repo), "-s", "s", "--compose", str(file), "--plain", cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "phalanx-results").iterdir()
    # The stage runs as the service's user, writes where it works, reaches its agent.
    assert _logs(run, "look") == {"solo": "solo says hi as 1000:1000\nwrote\nsynced\n"}
    assert _left(run.name) == []
