"""Container hosts (`provider: podman`): each a container of its own image
on the cluster's bridge. The end-to-end tests run `phalanx run` as a user
would, on real containers of Debian images built from Debian's mirror, and
look at what the stages saw and at what is left on the machine afterwards.
Without root, podman or mmdebstrap they skip, saying why."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from phalanx.layout import agent_log, new_run_id
from phalanx.load.cluster import load_cluster
from phalanx.load.errors import DefinitionErrors
from phalanx.model import Cluster, Host, PublishedPort, Service
from phalanx.providers.base import AgentSpec, ProvisionError
from phalanx.providers.containeragent import ImageRefused, parse_probe
from phalanx.providers.containerimage import ImageBuildError, build, content_key, packages_of
from phalanx.providers.containers import ENGINE_ENV, RUN_LABEL, EngineError, engine
from phalanx.providers.podman import Container, PodmanProvider, memory
from tests.eventually import eventually, eventually_async
from tests.processes import run_folder, wait_for
from tests.providers.containers import STORAGE_PACKAGES, image, needs_podman
from tests.providers.test_machine import _free_port
from tests.providers.test_netns import _logs, _made_by, _phalanx, _repo, _start

# --- what needs no engine ------------------------------------------------------------------


def test_an_image_without_a_usable_python_is_refused_naming_it_and_what_it_lacks() -> None:
    with pytest.raises(ImageRefused, match=r"image alpine:3 .*no Python >= 3.11 \(no python3"):
        parse_probe("alpine:3", "libc -\n")
    with pytest.raises(ImageRefused, match=r"image old .*found /usr/bin/python3 \(3.9\)"):
        parse_probe("old", "libc glibc\ncpython 3.9 x86_64 /usr/bin/python3\n")
    with pytest.raises(ImageRefused, match=r"built on musl.*need glibc"):
        parse_probe("alp", "libc musl\ncpython 3.12 x86_64 /usr/bin/python3\n")
    found = parse_probe("deb", "libc glibc\ncpython 3.11 x86_64 /usr/bin/python3\n")
    assert (found.python.path, found.python.version, found.libc) == (
        "/usr/bin/python3",
        (3, 11),
        "glibc",
    )


def test_an_images_key_is_its_content_whatever_the_order_of_the_packages() -> None:
    assert content_key(("curl", "jq")) == content_key(("jq", "curl", "python3"))
    assert content_key(("curl",)) != content_key(())
    assert packages_of(" curl, jq ,") == ("curl", "jq")
    with pytest.raises(ImageBuildError, match="'rm -rf' is not a Debian package name"):
        packages_of("curl,rm -rf")


def test_ram_size_becomes_the_engines_memory_limit() -> None:
    assert [memory(s) for s in ("512M", "1G", "1024", "2GiB")] == ["512m", "1g", "1024m", "2g"]
    with pytest.raises(ProvisionError, match="ram_size 'lots'"):
        memory("lots")


def test_a_cluster_names_its_image_and_a_bad_one_is_an_error_at_its_line(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(
        "name: c\nprovider: podman\nimage: base:1\nhosts:\n  - {name: a.t, image: other:2, cpus: 2}\n"
        "  - b.t\n"
    )
    cluster = load_cluster(file)
    assert (cluster.provider, cluster.image) == ("podman", "base:1")
    assert [h.image for h in cluster.hosts] == ["other:2", None]
    assert [h.vcpus for h in cluster.hosts] == [2, None]  # a container's --cpus
    file.write_text("name: c\nprovider: podman\nimage: [x]\nhosts: [a.t]\n")
    with pytest.raises(DefinitionErrors) as caught:
        load_cluster(file)
    assert [str(e) for e in caught.value.errors] == [f"{file}:3: image: must be an image name"]


def test_an_agent_that_never_connected_is_explained_by_its_logs_last_lines(
    tmp_path: Path,
) -> None:
    cluster = Cluster(name="c", hosts=(Host(name="a.t"),), image="img")
    provider = PodmanProvider(cluster, tmp_path, "run-1")
    assert provider.explain("a.t") is None  # never started: nothing to say
    provider.containers["a.t"] = Container("a.t", "phx-x-0", ())
    log = agent_log(tmp_path / "a.t")
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(20)) + "ModuleNotFoundError: x\n")
    said = provider.explain("a.t")
    assert said is not None
    assert said.splitlines()[0] == "a.t's agent said:"
    assert said.splitlines()[-1] == "ModuleNotFoundError: x" and "line 8" not in said


def test_the_engine_is_the_one_asked_for_else_the_one_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\nexit 0\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    found = engine()
    assert (found.path, found.kind) == (str(docker), "docker")
    # Docker joins no network namespace by path: its containers start without
    # one (phalanx plumbs it after), are asked their pid, and rm takes no --time.
    assert found.network_option("phx-x-0") == ["--network", "none"]
    assert found.pidfile_option(tmp_path / "pid") == []
    assert found.remove_options() == ["--force"]
    assert found.label_field("phalanx.run") == '{{.Label "phalanx.run"}}'
    monkeypatch.setenv(ENGINE_ENV, "podman")
    with pytest.raises(EngineError, match=f"{ENGINE_ENV}=podman: no such program on PATH"):
        engine()
    monkeypatch.delenv(ENGINE_ENV)
    docker.unlink()
    with pytest.raises(EngineError, match=r"need podman or docker.*apt-get install podman runc"):
        engine()


# --- real containers -----------------------------------------------------------------------


def _left(run_id: str) -> list[str]:
    """What of a run is still on the machine: its network (as netns hosts'),
    its containers and volumes."""
    kind = engine()
    shown = []
    for what in (["ps", "--all"], ["volume", "ls"]):
        out = subprocess.run(
            [kind.path, *what, "--filter", f"label={RUN_LABEL}={run_id}", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        for item in json.loads(out or "[]"):
            names = item.get("Names") or item.get("Name")
            shown.append(f"{what[0]} {names}")
    return _made_by(run_id) + shown


STORAGE_CLUSTER = """\
name: c
provider: podman
image: {base}
hosts:
  - name: store1.pod.test
    roles: [storage]
    image: {storage}
    aliases: [data1]
    disks: [{{name: data, size: 1G, mount_point: /data}}]
  - name: store2.pod.test
    roles: [storage]
    image: {storage}
    disks: [{{name: data, size: 1G, mount_point: /data}}]
  - name: client.pod.test
    roles: [client]
    link: {{rate: 8mbit}}
"""

# Both storage servers serve their own /data on one port; store1 cuts
# itself off from store2 and heals; every host says what it sees.
STORAGE_RUN = """\
#!/bin/bash
fetch() {
    python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode().strip())' \\
        "http://$1:8000/owner" 2>/dev/null || echo unreachable
}
echo "hostname=$(hostname)"
echo "nc=$(command -v nc || echo none)"
grep pod.test /etc/hosts | sort
if [ "@role@" = storage ]; then
    hostname > /data/owner
    python3 -m http.server 8000 --bind 0.0.0.0 --directory /data >/dev/null 2>&1 &
    until fetch 127.0.0.1 | grep -q pod.test; do sleep 0.1; done
fi
phalanx-sync serving
echo "store1 before: $(fetch store1)"
echo "store2 before: $(fetch store2)"
phalanx-sync seen
if [ "$(hostname -s)" = store1 ]; then phalanx-net partition store1,client store2; fi
phalanx-sync cut
echo "store1 cut: $(fetch store1)"
echo "store2 cut: $(fetch store2)"
phalanx-sync seen-cut
if [ "$(hostname -s)" = store1 ]; then phalanx-net heal; fi
phalanx-sync healed
echo "store1 healed: $(fetch data1)"
echo "store2 healed: $(fetch store2)"
tc qdisc show dev eth0 | grep -o 'tbf .* rate [^ ]*' || echo "no tbf"
"""

# The next case: what the last one started (its servers) ended with it.
AFTER = """\
#!/bin/bash
pgrep -f "http[.]server" >/dev/null && echo "server left running" || echo "no server left"
cat /data/owner 2>/dev/null || echo "no data"
"""


@needs_podman
def test_two_storage_servers_each_own_data_and_are_partitioned_and_healed(
    tmp_path: Path,
) -> None:
    _storage_servers_partitioned_and_healed(tmp_path)


@needs_podman
def test_through_dockers_cli_two_storage_servers_are_partitioned_and_healed(
    tmp_path: Path, docker: dict[str, str]
) -> None:
    """The same suite with Docker's CLI as the engine (its network plumbed
    after each container starts): podman is not called once."""
    calls = tmp_path / "podman-calls"
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "podman").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 1\n')
    (shim / "podman").chmod(0o755)
    path = f"{shim}{os.pathsep}{os.environ['PATH']}"
    _storage_servers_partitioned_and_healed(tmp_path, {**docker, "PATH": path})
    assert not calls.exists(), calls.read_text()


def _storage_servers_partitioned_and_healed(
    tmp_path: Path, env: dict[str, str] | None = None
) -> None:
    base, storage = image(), image(STORAGE_PACKAGES)
    repo = _repo(
        tmp_path / "repo",
        STORAGE_CLUSTER.format(base=base, storage=storage),
        {"store": {"run.sh": STORAGE_RUN}, "after": {"run.sh": AFTER}},
    )
    done = _phalanx("run", str(repo), "-s", "s", "--plain", cwd=tmp_path, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "phalanx-results").iterdir()
    logs = _logs(run, "store")
    one, two, client = (logs[f"{n}.pod.test"] for n in ("store1", "store2", "client"))
    for name, log in (("store1", one), ("store2", two), ("client", client)):
        assert f"hostname={name}.pod.test" in log, log
        # Each sees every host's names, the aliases included.
        assert "store1.pod.test store1 data1" in log, log
    # Each storage server serves the /data it owns; the roles' packages differ.
    assert "nc=/usr/bin/nc" in one and "nc=/usr/bin/nc" in two and "nc=none" in client
    for log in (one, two, client):
        assert "store1 before: store1.pod.test" in log, log
        assert "store2 before: store2.pod.test" in log, log
        assert "store1 healed: store1.pod.test" in log, log
        assert "store2 healed: store2.pod.test" in log, log
    assert "store2 cut: unreachable" in one and "store2 cut: unreachable" in client
    assert "store1 cut: unreachable" in two and "store2 cut: store2.pod.test" in two
    assert "store1 cut: store1.pod.test" in client
    # The client's link is its own: a rate on its interface, none on the servers'.
    assert "rate 8Mbit" in client and "no tbf" in one
    after = _logs(run, "after")
    assert all("no server left" in log for log in after.values()), after
    assert "store1.pod.test" in after["store1.pod.test"] and "no data" in after["client.pod.test"]
    assert _left(run.name) == []


MIXED_RUN = """\
#!/bin/bash
reach() {
    python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], 9300), 2).close()' "$1" \\
        2>/dev/null && echo ok || echo cut
}
test -e {mark} && echo "files: this machine's" || echo "files: its own"
python3 -c 'import socket; s = socket.create_server(("0.0.0.0", 9300)); [s.accept()[0].close() for _ in iter(int, 1)]' &
until [ "$(reach 127.0.0.1)" = ok ]; do sleep 0.1; done
phalanx-sync listening
echo "whole: box $(reach box) here $(reach here)"
phalanx-sync seen
if [ "$(hostname -s)" = here ]; then phalanx-net isolate box; fi
phalanx-sync cut
echo "cut: box $(reach box) here $(reach here)"
phalanx-sync seen-cut
if [ "$(hostname -s)" = here ]; then phalanx-net heal; fi
phalanx-sync healed
echo "healed: box $(reach box) here $(reach here)"
"""


@needs_podman
def test_a_container_and_a_netns_host_share_the_bridge_and_its_faults(tmp_path: Path) -> None:
    mark = tmp_path / "on-this-machine"
    mark.touch()
    cluster = f"name: c\nprovider: podman\nimage: {image()}\nhosts:\n"
    cluster += "  - box.pod.test\n  - {name: here.pod.test, image: none}\n"
    run_sh = MIXED_RUN.replace("{mark}", str(mark))
    repo = _repo(tmp_path / "repo", cluster, {"mixed": {"run.sh": run_sh}})
    done = _phalanx("run", str(repo), "-s", "s", "--plain", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "phalanx-results").iterdir()
    logs = _logs(run, "mixed")
    box, here = logs["box.pod.test"], logs["here.pod.test"]
    assert "files: its own" in box and "files: this machine's" in here
    for log in (box, here):
        assert "whole: box ok here ok" in log and "healed: box ok here ok" in log, log
    assert "cut: box ok here cut" in box and "cut: box cut here ok" in here
    assert _left(run.name) == []


@needs_podman
def test_an_image_without_python_stops_the_run_before_anything_starts(tmp_path: Path) -> None:
    kind = engine()
    bare = f"localhost/phalanx-test-nopython:{content_key(())}"
    if subprocess.run([kind.path, "image", "exists", bare], timeout=60).returncode != 0:
        name = f"phx-test-strip-{time.monotonic_ns()}"
        subprocess.run(
            [kind.path, "run", "--name", name, *kind.run_options(), "--network", "none",
             image(), "sh", "-c", "rm -f /usr/bin/python3*"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        try:
            subprocess.run(
                [kind.path, "commit", name, bare], check=True, capture_output=True, timeout=120
            )
        finally:
            subprocess.run([kind.path, "rm", "--force", name], capture_output=True, timeout=60)
    cluster = f"name: c\nprovider: podman\nimage: {image()}\nhosts:\n  - a.pod.test\n"
    cluster += f"  - {{name: b.pod.test, image: {bare}}}\n"
    repo = _repo(tmp_path / "repo", cluster, {"ok": {"run.sh": "#!/bin/bash\ntrue\n"}})
    done = _phalanx("run", str(repo), "-s", "s", "--plain", cwd=tmp_path, timeout=300)
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert f"image {bare} cannot run phalanx's agent: no Python >= 3.11" in said, said
    (run,) = (tmp_path / "phalanx-results").iterdir()
    assert _left(run.name) == []
    assert not (run / "hosts" / "a.pod.test").exists()  # no container was started


# What a stage of a container host is in: the container's own namespaces
# and cgroups (those of its first process), its Python for phalanx's commands.
INSIDE = """\
#!/bin/bash
same() { [ "$(readlink /proc/self/ns/$1)" = "$(readlink /proc/1/ns/$1)" ] && echo yes || echo no; }
echo "mounts: $(same mnt) pids: $(same pid) net: $(same net) uts: $(same uts)"
cmp -s /proc/self/cgroup /proc/1/cgroup && echo "cgroups: the container's" || echo "cgroups: others"
echo "memory limit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
echo "agent: $(ps -eo args | grep -c '[p]halanx.host --coordinator')"
echo "helpers run with $(sed -n '1s/^#!//p' "$(command -v phalanx-sync)")"
echo "in its folder: $(pwd)"
hostname > /written-in-box
"""

LOOK = """\
import socket
import sys


class Look:
    def __init__(self, config):
        self.config = config
        self.final_results = None

    def run(self):
        with open("/written-in-box") as f:
            written = f.read().strip()
        self.final_results = {"python": sys.executable, "host": socket.gethostname(),
                              "written": written}
"""


@needs_podman
def test_a_container_hosts_stages_python_tests_and_nemesis_are_inside_its_container(
    tmp_path: Path,
) -> None:
    from tests.history.test_case_nemesis import KILLED, PAUSED, STATE, TICKER

    cluster = f"name: c\nprovider: podman\nimage: {image()}\nhosts:\n"
    cluster += "  - {name: box.pod.test, ram_size: 256M}\n"
    repo = _repo(
        tmp_path / "repo",
        cluster,
        {
            "inside": {"run.sh": INSIDE},
            "pausing": {"init.sh": TICKER, "run.sh": PAUSED, "finalize.sh": STATE},
            "killing": {"init.sh": TICKER, "run.sh": KILLED, "finalize.sh": STATE},
        },
    )
    suite = repo / "test-suites" / "s"
    (suite / "look.py").write_text(LOOK)
    (suite / "suite.yaml").write_text(
        "name: s\ncluster: c\ntimeout: 90\ntests:\n  - inside\n"
        "  - {name: look, kind: python, class: look:Look}\n"
        "  - pausing:\n      nemesis: {every: 0.3s, faults: [pause ticker], seed: 7}\n"
        "  - killing:\n      nemesis: {every: 0.3s, faults: [kill ticker], seed: 3}\n"
    )
    done = _phalanx("run", str(repo), "-s", "s", "--plain", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "phalanx-results").iterdir()
    inside = _logs(run, "inside")["box.pod.test"]
    assert "mounts: yes pids: yes net: yes uts: yes" in inside, inside
    assert "cgroups: the container's" in inside, inside
    assert f"memory limit: {256 * 1024 * 1024}" in inside, inside
    assert "agent: 1" in inside, inside  # the agent is one of the container's processes
    assert "helpers run with /opt/phalanx-agent/bin/python" in inside, inside
    assert f"in its folder: {(run / 'hosts' / 'box.pod.test').resolve()}" in inside, inside
    assert not Path("/written-in-box").exists()
    results = json.loads((run / "results.json").read_text())
    cases = {c["name"]: c for c in results["cases"]}
    (host,) = cases["look"]["stages"][0]["hosts"]
    assert host["data"]["final_results"]["look"] == {
        "python": "/opt/phalanx-agent/bin/python",
        "host": "box.pod.test",
        "written": "box.pod.test",
    }
    # The nemesis reached the case's processes inside the container.
    logs = {case: _logs(run, case)["box.pod.test"] for case in ("pausing", "killing")}
    assert "ticker paused" in logs["pausing"] and "ticker killed" in logs["killing"], logs
    assert "ticker state: gone" in _logs(run, "killing", "finalize")["box.pod.test"]
    assert _left(run.name) == []
    # The agent went with its container, and what waited for it outside too.
    assert _processes_naming(str(run.resolve())) == []


def _processes_naming(text: str) -> list[str]:
    """The command lines of this machine's processes that name `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in line:
                found.append(line)
    return found


def _sleeping(
    tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], Path]:
    """A run on two container hosts (one with a volume) whose stages sleep,
    once both hosts are in their stage: the run and its folder."""
    cluster = f"name: c\nprovider: podman\nimage: {image()}\nhosts:\n"
    cluster += "  - {name: a.pod.test, disks: [{name: d, size: 1G, mount_point: /d}]}\n"
    cluster += "  - b.pod.test\n"
    sleeper = "#!/bin/bash\necho sleeping\nsleep 600\n"
    repo = _repo(tmp_path / "repo", cluster, {"long": {"run.sh": sleeper}})
    proc = _start("run", str(repo), "-s", "s", "--plain", cwd=tmp_path, env=env)
    run = run_folder(tmp_path, proc, within=120)
    logs = [run / "cases" / "long" / "run" / f"{h}.pod.test.log" for h in ("a", "b")]
    wait_for(logs, proc, within=120)
    eventually(
        lambda: all("sleeping" in log.read_text() for log in logs),
        within=60,
        what="both stages sleeping",
    )
    return proc, run


@needs_podman
def test_ctrl_c_leaves_no_container_volume_nor_network_behind(tmp_path: Path) -> None:
    proc, run = _sleeping(tmp_path)
    assert any(what.startswith("ps ") for what in _left(run.name))
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert _left(run.name) == []


@needs_podman
def test_after_kill_9_phalanx_cleanup_removes_the_containers_and_says_so(
    tmp_path: Path,
) -> None:
    _killed_and_cleaned_up(tmp_path)


@needs_podman
def test_through_dockers_cli_after_kill_9_phalanx_cleanup_removes_everything(
    tmp_path: Path, docker: dict[str, str]
) -> None:
    """The containers' namespaces, named as netns hosts' once attached,
    and the containers and volumes, found by Docker's label templates."""
    _killed_and_cleaned_up(tmp_path, docker)


def _killed_and_cleaned_up(tmp_path: Path, env: dict[str, str] | None = None) -> None:
    proc, run = _sleeping(tmp_path, env)
    proc.kill()
    proc.communicate(timeout=60)
    left = _left(run.name)
    assert any(what.startswith("ps ") for what in left), left
    assert any(what.startswith("volume ") for what in left), left
    done = _phalanx("cleanup", cwd=tmp_path, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert _left(run.name) == []
    # Any podman or netns run that opens sweeps what dead runs left, so a
    # test running beside this one may have removed them first; when this
    # cleanup did, it says what it removed.
    if f"run {run.name}" in done.stdout:
        assert f"run {run.name}: removed container phx-" in done.stdout, done.stdout
        assert "volume phx-" in done.stdout
    else:
        assert "nothing to clean up" in done.stdout or "removed" in done.stdout, done.stdout


@needs_podman
def test_after_kill_9_the_next_run_removes_the_leftover_containers(tmp_path: Path) -> None:
    proc, run = _sleeping(tmp_path / "first")
    proc.kill()
    proc.communicate(timeout=60)
    assert any(what.startswith("ps ") for what in _left(run.name))
    cluster = f"name: c\nprovider: podman\nimage: {image()}\nhosts: [a.pod.test]\n"
    repo = _repo(tmp_path / "second", cluster, {"ok": {"run.sh": "#!/bin/bash\ntrue\n"}})
    done = _phalanx("run", str(repo), "-s", "s", "--plain", cwd=tmp_path / "second", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _left(run.name) == []


@needs_podman
def test_an_image_unused_for_long_is_pruned_when_another_is_taken(tmp_path: Path) -> None:
    kind = engine()
    built = image()
    old_key = "0123456789abcdef"
    stale = f"localhost/phalanx-debian:{old_key}"
    subprocess.run([kind.path, "tag", built, stale], check=True, timeout=60)
    cache = tmp_path / "images"
    (cache / old_key).mkdir(parents=True)
    os.utime(cache / old_key, (time.time() - 3 * 24 * 3600,) * 2)
    taken = asyncio.run(build(kind, cache_dir=cache))
    assert (taken.tag, taken.built) == (built, False)
    assert not (cache / old_key).exists()
    gone = subprocess.run([kind.path, "image", "exists", stale], timeout=60)
    assert gone.returncode == 1  # the stale tag is removed, the image it named kept
    assert subprocess.run([kind.path, "image", "exists", built], timeout=60).returncode == 0


@needs_podman
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv to drop capabilities")
def test_without_net_admin_a_podman_run_errors_at_once_naming_the_provider(
    tmp_path: Path,
) -> None:
    cluster = f"name: c\nprovider: podman\nimage: {image()}\nhosts: [a.pod.test]\n"
    repo = _repo(tmp_path / "repo", cluster, {"ok": {"run.sh": "#!/bin/bash\ntrue\n"}})
    done = subprocess.run(
        ["setpriv", "--inh-caps=-net_admin,-sys_admin", "--bounding-set=-net_admin,-sys_admin",
         sys.executable, "-m", "phalanx.cli", "run", str(repo), "-s", "s", "--plain"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert (
        "provisioning failed: the podman provider makes network namespaces, a bridge and links, "
        "which needs root" in " ".join(done.stdout.split())
    ), done.stdout
    (run,) = (tmp_path / "phalanx-results").iterdir()
    assert _left(run.name) == []


@needs_podman
def test_image_build_container_finds_the_cached_image_and_tags_it(tmp_path: Path) -> None:
    built = image()
    done = _phalanx(
        "image", "build", "--container", "--tag", "localhost/phalanx-test-tagged:1", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{built} (cached, tagged localhost/phalanx-test-tagged:1)"
    kind = engine()
    shown = subprocess.run(
        [kind.path, "image", "inspect", "--format", "{{.Id}}", built,
         "localhost/phalanx-test-tagged:1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    first, second = shown.stdout.split()
    assert first == second
    bad = _phalanx("image", "build", "--container", "--packages", "a;b", cwd=tmp_path)
    assert bad.returncode == 1
    assert "--packages: 'a;b' is not a Debian package name" in bad.stderr


def _fetch(url: str) -> str | None:
    """The page, or None while nothing answers there (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as page:
            return str(page.read().decode())
    except (OSError, http.client.HTTPException):
        return None


@needs_podman
def test_a_services_published_port_reaches_it_from_this_machine_until_the_run_ends(
    tmp_path: Path,
) -> None:
    port = _free_port()
    web = Host(
        name="web.pod.test",
        service=Service(
            command=("python3", "-m", "http.server", "8000", "--directory", "/etc"),
            ports=(PublishedPort(host_ip="127.0.0.1", published=port, target=8000),),
        ),
    )
    cluster = Cluster(name="c", hosts=(web,), provider="podman", image=image())
    run_id = new_run_id()
    url = f"http://127.0.0.1:{port}/hostname"

    async def scenario() -> str:
        provider = PodmanProvider(cluster, tmp_path / run_id, run_id)
        try:
            await provider.open()
            # No coordinator: the service's own process is what is reached.
            agent = AgentSpec(web, f"ws://{provider.listen_address}:9/agent", "unused")
            await provider.up([agent])

            async def page() -> str | None:
                return await asyncio.to_thread(_fetch, url)

            served: str = await eventually_async(page, within=90, what=f"{url} answering")
        finally:
            await provider.close()
        return served

    # Served by the service's container (its /etc/hostname), through this machine's port.
    assert asyncio.run(scenario()).strip() == "web.pod.test"
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        urllib.request.urlopen(url, timeout=5)
    assert _left(run_id) == []
