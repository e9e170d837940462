"""What an agent beside a container needs without a container: which
cgroup files put it into the container's cgroups, and how a stage's
command enters the container."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.host import beside
from phalanx.host.namespaces import cgroup_procs

# This machine's layout when this was written: cgroup v1 hierarchies (one
# named, two controllers sharing one) beside the unified one, as podman's
# cgroupfs manager places a container.
HYBRID_MOUNTS = """\
25 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup rw shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:28 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd
34 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:12 - cgroup cgroup rw,cpuacct,cpu
35 31 0:30 / /sys/fs/cgroup/memory rw shared:13 - cgroup cgroup rw,memory
"""
HYBRID_CGROUPS = """\
9:name=systemd:/libpod_parent/libpod-abc
4:memory:/libpod_parent/libpod-abc
2:cpu,cpuacct:/libpod_parent/libpod-abc
1:pids:/libpod_parent/libpod-abc
0::/libpod_parent/libpod-abc
"""


def test_each_hierarchy_of_the_containers_cgroups_is_joined_where_it_is_mounted() -> None:
    assert cgroup_procs(HYBRID_CGROUPS, HYBRID_MOUNTS) == [
        Path("/sys/fs/cgroup/systemd/libpod_parent/libpod-abc/cgroup.procs"),
        Path("/sys/fs/cgroup/memory/libpod_parent/libpod-abc/cgroup.procs"),
        Path("/sys/fs/cgroup/cpu,cpuacct/libpod_parent/libpod-abc/cgroup.procs"),
        # pids is mounted nowhere here: left out, not an error.
        Path("/sys/fs/cgroup/unified/libpod_parent/libpod-abc/cgroup.procs"),
    ]


def test_a_unified_mount_of_a_subtree_is_joined_below_its_root() -> None:
    mounts = "40 31 0:27 /machine /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert cgroup_procs("0::/machine/ctr-1\n", mounts) == [
        Path("/sys/fs/cgroup/ctr-1/cgroup.procs")
    ]
    assert cgroup_procs("0::/machine\n", mounts) == [Path("/sys/fs/cgroup/cgroup.procs")]


@pytest.fixture
def container() -> Iterator[beside.Container]:
    settled = beside.Container(
        "/opt/phalanx-agent/bin/python",
        "/opt/phalanx-agent/lib/python3.11/site-packages",
        "/usr/bin/nsenter",
        (1000, 100),
    )
    beside.settle(settled)
    try:
        yield settled
    finally:
        beside.settle(None)


def test_without_a_container_commands_and_paths_are_this_machines() -> None:
    assert beside.command(["sh", "-c", "true"], Path("/w")) == ["sh", "-c", "true"]
    assert beside.path("/var/log/x.log") == "/var/log/x.log"


def test_beside_a_container_a_stage_enters_its_files_in_its_folder_as_its_user(
    container: beside.Container,
) -> None:
    assert beside.command(["sh", "-c", "true"], Path("/w/h1")) == [
        "/usr/bin/nsenter", "--mount=/proc/1/ns/mnt", "--wd=/proc/1/root/w/h1",
        "--setuid=1000", "--setgid=100", "--", "sh", "-c", "true",
    ]  # fmt: skip
    # What the agent reads for a stage is the container's file; relative
    # paths (its folder, the same on both sides) are left as they are.
    assert beside.path("/var/log/x.log") == "/proc/1/root/var/log/x.log"
    assert beside.path("logs/x.log") == "logs/x.log"
    assert beside.python() == "/opt/phalanx-agent/bin/python"
    assert beside.stage_uid() == 1000
