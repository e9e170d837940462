"""`boot_image:` hosts: the per-run overlay, the cloud-init NoCloud seed
(read back from the ISO as a guest would), and one real boot of a Debian
cloud image (built by tests/providers/cloudimage.py from the Debian mirror,
cached) through `phalanx run`: the agent installed from the seed connects,
a stage runs, the base image is untouched and nothing is left running."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from phalanx.providers import bridge, cloudinit, netns, qemuimg, qemuvm
from phalanx.providers.base import ProvisionError
from phalanx.providers.vmimage import BOOTED_MARK, ImageError, find_busybox, find_kernel
from tests.processes import alive
from tests.providers import cloudimage

TOKEN = "s3cr3t-token-of-this-run"
SEED = cloudinit.Seed(
    name="vm0.cloud.test",
    url="ws://10.0.2.2:4242/agent",
    token=TOKEN,
    address="10.0.2.15/24",
    gateway="10.0.2.2",
    dns="10.0.2.3",
    hosts_file="127.0.0.1 localhost\n10.0.2.15 vm0.cloud.test vm0\n",
    workdir="/var/lib/phalanx/agent",
    give_up=30,
    mac="52:54:00:12:34:56",
)
needs_qemu_img = pytest.mark.skipif(
    shutil.which("qemu-img") is None,
    reason="qemu-img is not installed (apt-get install qemu-utils)",
)


def test_the_seed_is_a_cidata_iso_with_the_agents_install_its_wheels_and_token(
    tmp_path: Path,
) -> None:
    wheels = [
        tmp_path / "phalanx-1-py3-none-any.whl",
        tmp_path
        / "pydantic_core-2.33.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    ]
    for i, wheel in enumerate(wheels):
        wheel.write_bytes(b"PK wheel %d" % i * 1000)
    iso = tmp_path / "seed.iso"
    cloudinit.make_seed(iso, SEED, "run-1-vm0", wheels)

    files = cloudinit.read_seed(iso)
    seed = cloudinit.summary(files)
    assert seed["volume"] == "cidata"
    assert seed["meta-data"] == {"instance-id": "run-1-vm0", "local-hostname": "vm0.cloud.test"}
    assert seed["network-config"] == {
        "version": 2,
        "ethernets": {
            "eth0": {
                "match": {"macaddress": "52:54:00:12:34:56"},
                "set-name": "eth0",
                "addresses": ["10.0.2.15/24"],
                "gateway4": "10.0.2.2",
                "nameservers": {"addresses": ["10.0.2.3"]},
            }
        },
    }
    assert seed["wheels"] == sorted(w.name for w in wheels)
    assert files["wheelhouse/phalanx-1-py3-none-any.whl"] == wheels[0].read_bytes()
    assert files["token"] == TOKEN.encode()
    assert files["user-data"].startswith(b"#cloud-config\n")
    user = seed["user-data"]
    assert user["fqdn"] == "vm0.cloud.test" and user["manage_etc_hosts"] is False
    written = {f["path"]: f for f in user["write_files"]}
    assert written["/etc/hosts"]["content"] == SEED.hosts_file
    unit = written[f"/etc/systemd/system/{cloudinit.UNIT}"]["content"]
    assert "--coordinator ws://10.0.2.2:4242/agent --name vm0.cloud.test" in unit
    assert f"--token-file {cloudinit.GUEST_TOKEN}" in unit
    assert "[Unit]\n" in unit.split("SuccessAction=poweroff-force\n")[0]  # a [Unit] setting
    ((shell, dash_c, script),) = user["runcmd"]
    assert (shell, dash_c) == ("sh", "-c")
    assert '/pip" install --quiet --no-index' in script
    assert f"--find-links {cloudinit.GUEST_SEED}/wheelhouse phalanx" in script
    assert f"install -m 0600 {cloudinit.GUEST_SEED}/token {cloudinit.GUEST_TOKEN}" in script
    assert BOOTED_MARK in script
    # The token is in its own file only: not in what cloud-init keeps, not
    # in the agent's command line.
    for name in ("user-data", "meta-data", "network-config"):
        assert TOKEN.encode() not in files[name]


def test_without_a_bridge_the_guests_hosts_file_has_its_own_names() -> None:
    from dataclasses import replace

    bare = replace(SEED, hosts_file="", dns="")
    user = json.loads(cloudinit.user_data(bare).split("\n", 1)[1])
    hosts = {f["path"]: f["content"] for f in user["write_files"]}["/etc/hosts"]
    assert hosts == "127.0.0.1 localhost\n127.0.1.1 vm0.cloud.test vm0\n"
    assert "nameservers" not in json.loads(cloudinit.network_config(bare))["ethernets"]["eth0"]


def _digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest(), path.stat().st_mtime_ns


@needs_qemu_img
async def test_the_overlay_is_backed_by_the_base_which_it_leaves_alone(tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True)
    before = _digest(base)
    overlay = tmp_path / "private" / "root.qcow2"
    overlay.parent.mkdir()
    await qemuimg.make_overlay(base, overlay)
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(overlay)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(base)
    assert info["backing-filename-format"] == "qcow2"
    # Written through the overlay, the data lands there, not in the base.
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", str(overlay)],
        check=True,
        capture_output=True,
    )
    assert _digest(base) == before


def test_a_boot_image_that_is_not_there_is_a_provision_error(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match=r"boot_image nowhere\.qcow2: no such file"):
        cloudinit.boot_image_path("nowhere.qcow2", tmp_path)


# --- one real boot ------------------------------------------------------------------


def _boot_missing() -> str | None:
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
    try:
        find_kernel()  # the KVM probe boots the tiny image
        find_busybox()
    except ImageError as exc:
        return str(exc)
    if cloudimage.cache_path().is_file():
        return None
    return cloudimage.why_not()


BOOT_MISSING = _boot_missing()
BOOT = 1500  # seconds: building the image (once), and a full distribution booting under TCG

CLUSTER = """\
name: c
provider: qemu
hosts:
  - name: vm0.cloud.test
    ram_size: 768M
    boot_image: {image}
"""
CHECK = """\
echo "host $(hostname -f)"
echo "agent $(systemctl is-active phalanx-agent)"
echo "token $(stat -c '%a %U' /etc/phalanx/token)"
echo "root $(findmnt -n -o SOURCE /)"
echo "agent python $(ls /opt/phalanx/bin/python)"
"""


@pytest.mark.skipif(BOOT_MISSING is not None, reason=BOOT_MISSING or "")
@pytest.mark.timeout(BOOT)
def test_a_boot_image_boots_by_its_own_bootloader_installs_the_agent_and_runs_a_stage(
    tmp_path: Path,
) -> None:
    image = cloudimage.image()
    before = _digest(image)
    repo = tmp_path / "repo"
    (repo / "clusters").mkdir(parents=True)
    (repo / "clusters" / "c.yaml").write_text(CLUSTER.format(image=image))
    suite = repo / "test-suites" / "s"
    (suite / "tc" / "hello").mkdir(parents=True)
    (suite / "tc" / "hello" / "run.sh").write_text(CHECK)
    (suite / "suite.yaml").write_text(
        textwrap.dedent("""\
        name: s
        cluster: c
        timeout: 120
        tests:
          - hello
        """)
    )
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", str(repo), "-s", "s", "--plain",
         "--connect-timeout", "300"],
        cwd=tmp_path, capture_output=True, text=True, timeout=BOOT - 60,
    )  # fmt: skip
    assert (tmp_path / "phalanx-results").is_dir(), done.stdout + done.stderr
    (run,) = (tmp_path / "phalanx-results").iterdir()
    folder = run / "hosts" / "vm0.cloud.test"
    console = (folder / "console.log").read_text(errors="replace")
    assert done.returncode == 0, done.stdout + done.stderr + console[-3000:]
    report = json.loads((run / "results.json").read_text())
    (stage,) = report["cases"][0]["stages"]
    (host,) = stage["hosts"]
    text = host["output_tail"]
    assert "host vm0.cloud.test\n" in text
    assert "agent active\n" in text
    assert "token 600 root\n" in text
    assert "root /dev/vda2\n" in text
    assert "agent python /opt/phalanx/bin/python\n" in text
    # Its own bootloader: SYSLINUX on the console, no -kernel on QEMU's line.
    assert "SYSLINUX" in console and BOOTED_MARK in console
    vm = report["vms"]["vm0.cloud.test"]
    assert vm["boot_to_agent_s"] > 0 and vm["boot_to_connected_s"] >= vm["boot_to_agent_s"]
    assert vm["ended_by"] == "itself"  # its agent ended, and its unit powered it off
    assert vm["boot_image"] == str(image)
    # The base is as it was; nothing is left running; the overlay and seed
    # went with the VM's private folder.
    assert _digest(image) == before
    assert not alive(int((folder / "qemu.pid").read_text()))
    for parent in (qemuvm.PRIVATE_PARENT, Path(os.environ.get("TMPDIR", "/tmp"))):
        assert not list(parent.glob(f"phalanx-qemu-{run.name[-8:]}-*")), parent
    mark = f"phx{netns.label(run.name)}"
    assert [link for link in asyncio.run(bridge.links()) if link.startswith(mark)] == []


def test_the_cloud_image_recipe_needs_root_and_its_tools_or_says_why() -> None:
    problem = cloudimage.why_not()
    if os.geteuid() != 0:
        assert problem is not None and "root" in problem
    elif problem is not None:
        assert "apt-get install" in problem
