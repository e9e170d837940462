"""The tiny VM image of the qemu provider: this machine's kernel and an
initramfs that phalanx assembles from packages (busybox, the kernel's own
modules), cached by content hash under ~/.cache/phalanx/images/.

The guest runs this machine's userland: its init mounts this machine's `/`
read-only over virtio-9p (mount tag `hostroot`), lays a tmpfs over it
(overlayfs) so that a stage may write anywhere, and starts the agent with
the same Python and phalanx as the coordinator. What a VM is told (its name,
the coordinator's URL, its token) comes on a second 9p share of its own
(mount tag `seed`, a 0700 folder on this machine with a 0600 token file),
never on the kernel command line, which every process in the guest and
every user of this machine (`ps`) can read; so do its address and, on a
bridge, its /etc/hosts. Init reads the seed and unmounts it before any
stage runs.

A VM that must be saved, restored or migrated cannot have a 9p share
mounted (QEMU refuses), so it boots a root disk instead (`build_root_disk`:
an ext4 image with busybox, this Python, the agent's packages, bash and
sshd; the kernel command line says `phalanx.root=disk`, the init mounts it
read-write). The seed stays a 9p share: unmounted, it blocks neither.

Nothing is downloaded (but the agent's wheels, for the root disk, from the
package index): the kernel is the newest one installed with 9p
support (Debian: `linux-image-amd64`; the `cloud` flavour has no 9p), and
busybox must be the static one (`busybox-static`).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from phalanx.providers import cache, guestnet

FORMAT = 1  # bump when the layout of an image changes: old ones are not reused
BUSYBOX_PATHS = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
# What the guest needs that a distribution kernel may build as modules.
MODULES = (
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "9pnet_virtio",
    "9p",
    "overlay",
    "crc32c_generic",  # ext4 (the root disk) checksums its metadata with it
    "ext4",
    "evdev",
    "virtio_console",  # the "go" port of a VM that reverts (revert: case)
    "button",  # the ACPI power button (QMP `system_powerdown`), read by acpid from evdev
    *guestnet.MODULES,  # netem, tbf, ifb: link conditions and `slow` (guestnet)
)
APT_HINT = "install them with: apt-get install linux-image-amd64 busybox-static"
PROBE_MARK = "phalanx-vm: probe ok"
BOOTED_MARK = "phalanx-vm: starting the agent"


class ImageError(Exception):
    """The image cannot be built here; the message says what is missing."""


@dataclass(frozen=True)
class Kernel:
    version: str
    image: Path  # vmlinuz
    modules: Path  # /lib/modules/VERSION


@dataclass(frozen=True)
class Image:
    path: Path  # the image's folder in the cache
    kernel: Path
    initrd: Path
    kernel_version: str
    built: bool  # False: it was in the cache already


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "phalanx" / "images"


def _version_key(version: str) -> list[tuple[int, str]]:
    return [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.\-+~]", version)]


def find_kernel(boot: Path = Path("/boot"), lib: Path = Path("/lib/modules")) -> Kernel:
    """The newest installed kernel whose configuration has 9p."""
    found: list[Kernel] = []
    for image in boot.glob("vmlinuz-*"):
        version = image.name.removeprefix("vmlinuz-")
        config = boot / f"config-{version}"
        modules = lib / version
        if not (modules / "modules.dep").is_file() or not config.is_file():
            continue
        if re.search(r"^CONFIG_9P_FS=[ym]$", config.read_text(errors="replace"), re.M):
            found.append(Kernel(version, image, modules))
    if not found:
        raise ImageError(f"no installed kernel with 9p support under {boot}; {APT_HINT}")
    return max(found, key=lambda k: _version_key(k.version))


def _is_static_elf(data: bytes) -> bool:
    """An ELF executable without an interpreter (PT_INTERP): it runs in an
    initramfs that has no libc."""
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only
        return False
    endian = "<" if data[5] == 1 else ">"
    phoff = struct.unpack_from(endian + "Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    for i in range(phnum):
        if struct.unpack_from(endian + "I", data, phoff + i * phentsize)[0] == 3:  # PT_INTERP
            return False
    return True


def find_busybox() -> bytes:
    for path in BUSYBOX_PATHS:
        if path.is_file():
            data = path.read_bytes()
            if _is_static_elf(data):
                return data
            raise ImageError(f"{path} is not a static busybox; {APT_HINT}")
    raise ImageError(f"no busybox; {APT_HINT}")


def _module_name(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    name = re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", name)
    return name.replace("-", "_")


def module_files(kernel: Kernel, wanted: tuple[str, ...] = MODULES) -> list[Path]:
    """The module files to load, dependencies first; built-in ones need none."""
    builtin_file = kernel.modules / "modules.builtin"
    builtin = (
        {_module_name(line) for line in builtin_file.read_text().split()}
        if builtin_file.is_file()
        else set()
    )
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (kernel.modules / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        deps[_module_name(target)] = (target, rest.split())
    order: list[str] = []

    def visit(name: str) -> None:
        if name in builtin or deps.get(name, ("", []))[0] in order:
            return
        if name not in deps:
            raise ImageError(f"kernel {kernel.version} has no module {name}")
        path, needs = deps[name]
        for dep in reversed(needs):  # modules.dep lists the deepest last
            visit(_module_name(dep))
        if path not in order:
            order.append(path)

    for name in wanted:
        visit(name)
    return [kernel.modules / p for p in order]


def _read_module(path: Path) -> bytes:
    """A module as busybox `insmod` loads it: uncompressed."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        raise ImageError(f"{path}: zstd-compressed modules are not supported")
    return data


# The guest's /init (busybox sh, in the initramfs). It ends in the second
# stage, PID 1 of the new root, which runs the agent and powers off when the
# agent exits, so a VM whose agent ends (shut down, given up) ends too.
INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /run
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "phalanx-vm: $*"; }
fail() { say "$*"; sleep 1; poweroff -f; }
while read -r m; do insmod "/modules/$m" || say "cannot load $m"; done < /modules.order
case " $(cat /proc/cmdline) " in
*" phalanx.probe "*) say "probe ok"; poweroff -f ;;
esac
mkdir -p /lower /rw /newroot /seed /ssh
case " $(cat /proc/cmdline) " in
*" phalanx.root=disk "*)
    # The root disk (build_root_disk), a per-VM overlay: read-write, and
    # nothing of this machine's file system is shared (9p would keep QEMU
    # from saving or migrating the VM).
    dev=
    for b in /sys/block/vd*; do
        [ "$(cat "$b/serial" 2>/dev/null)" = phalanx-root ] && dev=/dev/${b##*/}
    done
    [ -n "$dev" ] || fail "no root disk (a virtio disk with serial phalanx-root)"
    mount -t ext4 -o rw "$dev" /newroot || fail "cannot mount the root disk $dev"
    ;;
*)
    mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower \
        || fail "cannot mount the host's file system (9p hostroot)"
    mount -t tmpfs -o mode=0755 rw /rw
    mkdir -p /rw/upper /rw/work
    mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
        || fail "cannot lay a tmpfs over the host's file system (overlayfs)"
    ;;
esac
mount -t 9p -o trans=virtio,version=9p2000.L,ro seed /seed || fail "cannot mount the seed (9p)"
cp /seed/vm.env /vm.env
[ -f /seed/hosts ] && cp /seed/hosts /hosts
token=$(cat /seed/token 2>/dev/null)
for f in authorized_keys ssh_host_ed25519_key; do
    [ -f "/seed/$f" ] && cp "/seed/$f" "/ssh/$f"
done
# The link conditions, as `tc -batch` files (guestnet)
mkdir -p /net
for f in link.tc link-in.tc; do
    [ -f "/seed/$f" ] && cp "/seed/$f" "/net/$f"
done
umount /seed
. /vm.env
if [ -z "$PHALANX_TEMPLATE" ]; then
    # A template's guest has no name or address yet: each VM restored from
    # it is told its own (the template script, TEMPLATE_AGENT).
    # The short name, as Linux and XrdTest's guests have it; /etc/hosts
    # gives `hostname -f` the full one.
    hostname "${PHALANX_NAME%%.*}"
    ip link set lo up
    ip link set eth0 up
    ip addr add "$PHALANX_ADDRESS" dev eth0
    ip route add default via "$PHALANX_GATEWAY"
fi
for d in proc sys dev; do mount --move "/$d" "/newroot/$d"; done
# /tmp stays the host's, under the overlay: the Python and phalanx this VM
# runs may live there (a checkout or venv in /tmp). The folders of VM seeds
# and disks are hidden, so no stage reads a VM's token through the 9p root:
# they live under /run when this machine allows (every guest mounts a fresh
# /run below), else under /tmp, where each is masked here.
for private in ${PHALANX_PRIVATE:+"/newroot$PHALANX_PRIVATE"} /newroot/tmp/phalanx-qemu-*; do
    [ -d "$private" ] && mount -t tmpfs -o mode=0700 private "$private"
done
mount -t tmpfs -o mode=0755 phalanx /newroot/run
mkdir -p /newroot/run/phalanx/acpi/PWRF /newroot/dev/pts /newroot/dev/shm /newroot/etc
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs shm /newroot/dev/shm
cp /bin/busybox /stage2 /mount-disk /template.py /newroot/run/phalanx/
cp /poweroff /newroot/run/phalanx/acpi/PWRF/00000080
cp /guestnet /netctl /newroot/run/phalanx/
for f in /net/*; do [ -f "$f" ] && cp "$f" /newroot/run/phalanx/; done
umask 077
printf '%s' "$token" > /newroot/run/phalanx/token
cp -r /ssh /newroot/run/phalanx/ssh
umask 022
printf '%s\n' "${PHALANX_NAME%%.*}" > /newroot/etc/hostname
# On the cluster's bridge: every host's names and the coordinator's (as a
# netns host has them); on the user-mode network: this VM's own.
if [ -f /hosts ]; then
    cp /hosts /newroot/etc/hosts
else
    printf '127.0.0.1 localhost\n127.0.1.1 %s %s\n' "$PHALANX_NAME" "${PHALANX_NAME%%.*}" \
        > /newroot/etc/hosts
fi
if [ -n "$PHALANX_DNS" ]; then
    printf 'nameserver %s\n' "$PHALANX_DNS" > /newroot/etc/resolv.conf
else
    : > /newroot/etc/resolv.conf
fi
cp /vm.env /newroot/run/phalanx/vm.env
exec switch_root /newroot /run/phalanx/busybox sh /run/phalanx/stage2
"""

STAGE2 = r"""bb=/run/phalanx/busybox
set -a
. /run/phalanx/vm.env
set +a
PHALANX_AGENT_TOKEN=$($bb cat /run/phalanx/token 2>/dev/null)
$bb rm -f /run/phalanx/token
export PHALANX_AGENT_TOKEN PHALANX_HOSTNAME="$PHALANX_NAME" HOME=/root
export PATH="$PHALANX_PATH"
$bb acpid -d -c /run/phalanx/acpi &
# Link conditions and the phalanx.net port (guestnet), before the agent.
[ -f /run/phalanx/guestnet ] && $bb sh /run/phalanx/guestnet
if [ -f /run/phalanx/ssh/authorized_keys ] && [ -f /run/phalanx/ssh/ssh_host_ed25519_key ]; then
    $bb mkdir -p -m 0755 /run/sshd
    $bb cat > /run/phalanx/sshd_config <<EOF
Port 22
HostKey /run/phalanx/ssh/ssh_host_ed25519_key
AuthorizedKeysFile /run/phalanx/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile /run/sshd.pid
Subsystem sftp internal-sftp
EOF
    /usr/sbin/sshd -f /run/phalanx/sshd_config && echo "phalanx-vm: sshd started"
fi
go_port() {
    for p in /sys/class/virtio-ports/*; do
        [ "$($bb cat "$p/name" 2>/dev/null)" = phalanx.go ] && port=/dev/${p##*/}
    done
}
if [ -n "$PHALANX_TEMPLATE" ]; then
    # A template (providers/vmtemplate.py): the agent's Python with its
    # modules imported, saved while it waits on the go port for who it is.
    go_port
    "$PHALANX_PYTHON" /run/phalanx/template.py "$port" </dev/null &
else
    if [ -z "$PHALANX_URL" ]; then
        # A VM driven from outside (phalanx.virt): it stays up until powered off.
        echo "phalanx-vm: no coordinator, no agent; up"
        while :; do $bb sleep 3600; done
    fi
    $bb mkdir -p "$PHALANX_WORKDIR"
    cd "$PHALANX_WORKDIR"
    if [ -n "$PHALANX_WAIT_GO" ]; then
        # The provider snapshots the VM here (revert: case), then says go:
        # after each loadvm the guest is back here and a fresh agent starts.
        go_port
        exec 3<"$port"
        echo "phalanx-vm: waiting for go"
        read -r go <&3
        exec 3<&-
    fi
    echo "phalanx-vm: starting the agent ($PHALANX_PYTHON, coordinator $PHALANX_URL)"
    "$PHALANX_PYTHON" -m phalanx.host --coordinator "$PHALANX_URL" --name "$PHALANX_NAME" \
        --workdir "$PHALANX_WORKDIR" --give-up "$PHALANX_GIVE_UP" </dev/null &
fi
echo $! > /run/phalanx/agent.pid
unset PHALANX_AGENT_TOKEN
wait
echo "phalanx-vm: the agent exited; powering off"
$bb sync
$bb poweroff -f
"""

# A template's agent (providers/vmtemplate.py), run by stage2 with the go
# port's device: it imports what the agent needs, says it is ready (the
# provider saves the VM then), and waits. Each VM restored from the saved
# state is sent, on its own go port, one JSON line: who it is (vm.env's
# values, token, MAC, hosts file), the host's clock and fresh entropy;
# this takes them on and becomes the agent, as `python -m phalanx.host`.
TEMPLATE_AGENT = r"""import json
import os
import random
import shlex
import socket
import subprocess
import sys
import time

from phalanx.host import __main__ as entry
from phalanx.host import daemon  # noqa: F401  (the agent's imports, paid before the save)

BB = "/run/phalanx/busybox"


def line_from(port):
    # A virtio-serial port reads as empty until the host connects to it.
    line = b""
    with open(port, "rb", buffering=0) as channel:
        while not line.endswith(b"\n"):
            chunk = channel.read(65536)
            if chunk:
                line += chunk
            else:
                time.sleep(0.02)
    return line


def link(files):
    # The link conditions, as a cold boot's guestnet script applies them
    # from its seed (and where phalanx.net's heal finds them again).
    if not files.get("link.tc"):
        return
    for name, text in files.items():
        with open("/run/phalanx/" + os.path.basename(name), "w") as out:
            out.write(text)
    subprocess.run([BB, "ip", "link", "set", "ifb0", "up"], check=False)
    applied = all(
        subprocess.run(["/usr/sbin/tc", "-batch", "/run/phalanx/" + name]).returncode == 0
        for name in ("link.tc", "link-in.tc")
    )
    print("phalanx-vm: link conditions %s" % ("applied" if applied else "NOT applied"),
          flush=True)


def take(told):
    time.clock_settime(time.CLOCK_REALTIME, told["time"])
    with open("/dev/urandom", "wb") as pool:
        pool.write(bytes.fromhex(told["entropy"]))
    random.seed()
    env = told["env"]
    name = env["PHALANX_NAME"]
    socket.sethostname(name.split(".")[0])  # short; /etc/hosts has the full one
    with open("/etc/hostname", "w") as out:
        out.write(name.split(".")[0] + "\n")
    hosts = told.get("hosts") or "127.0.0.1 localhost\n127.0.1.1 %s %s\n" % (
        name, name.split(".")[0])
    with open("/etc/hosts", "w") as out:
        out.write(hosts)
    with open("/etc/resolv.conf", "w") as out:
        out.write("nameserver %s\n" % env["PHALANX_DNS"] if env["PHALANX_DNS"] else "")
    script = (
        'ip link set eth0 address "$1" && ip link set lo up && ip link set eth0 up && '
        'ip addr add "$2" dev eth0 && ip route add default via "$3"'
    )
    subprocess.run([BB, "sh", "-c", script, "-", told["mac"], env["PHALANX_ADDRESS"],
                    env["PHALANX_GATEWAY"]], check=True)
    link(told.get("link") or {})
    with open("/run/phalanx/vm.env", "w") as out:  # as a cold boot's stage2 has it
        out.write("".join("%s=%s\n" % (k, shlex.quote(v)) for k, v in env.items()))
    os.environ.update(env)
    os.environ.update(PHALANX_AGENT_TOKEN=told["token"], PHALANX_HOSTNAME=name, HOME="/root",
                      PATH=env["PHALANX_PATH"])
    os.makedirs(env["PHALANX_WORKDIR"], exist_ok=True)
    os.chdir(env["PHALANX_WORKDIR"])
    return env


print("phalanx-vm: template ready", flush=True)
env = take(json.loads(line_from(sys.argv[1])))
if env.get("PHALANX_WAIT_GO"):
    # As a cold boot's stage2 does: the provider snapshots the VM here
    # (revert: case), then says go; each loadvm comes back here.
    print("phalanx-vm: waiting for go", flush=True)
    line_from(sys.argv[1])
print("phalanx-vm: starting the agent (%s, coordinator %s, from a template)"
      % (sys.executable, env["PHALANX_URL"]), flush=True)
sys.exit(entry.main(["--coordinator", env["PHALANX_URL"], "--name", env["PHALANX_NAME"],
                     "--workdir", env["PHALANX_WORKDIR"], "--give-up", env["PHALANX_GIVE_UP"]]))
"""

# busybox acpid runs this on the ACPI power button (QMP system_powerdown):
# the agent is asked to end (it ends its stages), then the VM powers off.
POWEROFF = r"""#!/run/phalanx/busybox sh
bb=/run/phalanx/busybox
pid=$($bb cat /run/phalanx/agent.pid 2>/dev/null)
[ -n "$pid" ] && $bb kill -TERM "$pid"
i=0
while [ -n "$pid" ] && $bb kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do
    $bb sleep 0.2
    i=$((i + 1))
done
echo "phalanx-vm: powered off by ACPI" > /dev/console
$bb sync
$bb poweroff -f
"""

# `@diskmounts@` runs this once per disk: the disk is found by its serial
# (the disk's name), given a file system if it has none, and mounted.
MOUNT_DISK = r"""#!/run/phalanx/busybox sh
bb=/run/phalanx/busybox
name=$1 mountpoint=$2 dev=
for b in /sys/block/vd*; do
    [ "$($bb cat "$b/serial" 2>/dev/null)" = "$name" ] && dev=/dev/${b##*/}
done
[ -n "$dev" ] || { echo "no disk named $name on this VM" >&2; exit 1; }
$bb blkid "$dev" >/dev/null 2>&1 || $bb mke2fs -q "$dev" >/dev/null || exit 1
$bb mkdir -p "$mountpoint"
$bb grep -q " $mountpoint " /proc/mounts || $bb mount "$dev" "$mountpoint"
"""


def _cpio(entries: list[tuple[str, int, bytes, tuple[int, int]]]) -> bytes:
    """A newc cpio archive (what the kernel unpacks as an initramfs), with
    fixed owners and times so that the same files give the same bytes."""
    out = io.BytesIO()

    def pad(n: int) -> None:
        out.write(b"\0" * (-n % 4))

    for ino, (name, mode, data, (rmajor, rminor)) in enumerate(
        [*entries, ("TRAILER!!!", 0, b"", (0, 0))], start=1
    ):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmajor, rminor, len(encoded), 0)
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.write(encoded)
        pad(110 + len(encoded))
        out.write(data)
        pad(len(data))
    return out.getvalue()


DIR, FILE, EXEC, CHAR = 0o040755, 0o100644, 0o100755, 0o020600


def initramfs(kernel: Kernel, busybox: bytes) -> bytes:
    modules = module_files(kernel)
    entries: list[tuple[str, int, bytes, tuple[int, int]]] = [
        (d, DIR, b"", (0, 0)) for d in ("bin", "dev", "modules", "proc", "sys", "run")
    ]
    entries += [
        ("dev/console", CHAR, b"", (5, 1)),  # init's stdout before devtmpfs
        ("bin/busybox", EXEC, busybox, (0, 0)),
        ("init", EXEC, INIT.encode(), (0, 0)),
        ("stage2", FILE, STAGE2.encode(), (0, 0)),
        ("poweroff", EXEC, POWEROFF.encode(), (0, 0)),
        ("mount-disk", EXEC, MOUNT_DISK.encode(), (0, 0)),
        ("guestnet", FILE, guestnet.GUESTNET.encode(), (0, 0)),
        ("netctl", FILE, guestnet.NETCTL.encode(), (0, 0)),
        ("template.py", FILE, TEMPLATE_AGENT.encode(), (0, 0)),
    ]
    names = []
    for path in modules:
        name = _module_name(str(path)) + ".ko"
        names.append(name)
        entries.append((f"modules/{name}", FILE, _read_module(path), (0, 0)))
    entries.append(("modules.order", FILE, "".join(n + "\n" for n in names).encode(), (0, 0)))
    return gzip.compress(_cpio(entries), compresslevel=6, mtime=0)


def _uncompressed(kernel: Kernel, data: bytes) -> bytes | None:
    """The kernel's ELF image (vmlinux) out of its bzImage, when it can boot
    as is (PVH): a bzImage spends ~10 s unpacking itself under TCG, the
    ELF none."""
    config = kernel.image.with_name(f"config-{kernel.version}")
    if not re.search(r"^CONFIG_PVH=y$", config.read_text(errors="replace"), re.M):
        return None
    for magic in (b"\xfd7zXZ\x00", b"\x1f\x8b\x08\x00"):
        start = data.find(magic)
        if start < 0:
            continue
        try:
            if magic.startswith(b"\xfd"):
                elf = lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data[start:])
            else:  # the payload is followed by more: a stream decoder stops at its end
                elf = zlib.decompressobj(31).decompress(data[start:])
        except (lzma.LZMAError, zlib.error):
            continue
        if elf[:4] == b"\x7fELF":
            return elf
    return None


def build_image(root: Path | None = None) -> Image:
    """The image for the newest 9p-capable kernel, built unless the cache
    has it already (keyed by the hash of everything that goes in)."""
    root = root or cache_root()
    kernel = find_kernel()
    busybox = find_busybox()
    try:
        kernel_bytes = kernel.image.read_bytes()
    except PermissionError as exc:
        raise ImageError(f"cannot read the kernel {kernel.image}: {exc}") from exc
    digest = hashlib.sha256()
    scripts = (
        INIT, STAGE2, POWEROFF, MOUNT_DISK, TEMPLATE_AGENT, guestnet.GUESTNET, guestnet.NETCTL
    )  # fmt: skip
    parts = [str(FORMAT).encode(), kernel_bytes, busybox, *(s.encode() for s in scripts)]
    for part in parts + [m.read_bytes() for m in module_files(kernel)]:
        digest.update(hashlib.sha256(part).digest())
    path = root / digest.hexdigest()[:24]
    if (path / "image.json").is_file():
        meta = json.loads((path / "image.json").read_text())
        cache.taken(path)
        return Image(path, path / meta["boot"], path / "initramfs.img", kernel.version, False)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        elf = _uncompressed(kernel, kernel_bytes)
        boot = "vmlinux" if elf is not None else "vmlinuz"
        (staging / boot).write_bytes(elf if elf is not None else kernel_bytes)
        (staging / "initramfs.img").write_bytes(initramfs(kernel, busybox))
        meta = {"kernel": kernel.version, "format": FORMAT, "from": str(kernel.image), "boot": boot}
        _publish(staging, path, meta)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    cache.taken(path)
    return Image(path, path / boot, path / "initramfs.img", kernel.version, built=True)


def _publish(building: Path, path: Path, meta: dict[str, object]) -> None:
    """A build's folder, its `image.json` written last, renamed into the
    cache as `path` in one step: a reader finds a whole image or none, and
    of two builds racing, the first to get there wins."""
    (building / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
    building.chmod(0o755)
    try:
        building.rename(path)
    except OSError:
        if not (path / "image.json").is_file():  # not another build that won the race
            raise


# --- the disk root ----------------------------------------------------------------

ROOT_FORMAT = 2  # bump when the layout of a root disk changes
ROOT_SERIAL = "phalanx-root"  # the virtio-blk serial the init finds the root disk by
GUEST_PREFIX = "/usr/local"  # where this Python lives on the root disk
SSHD = Path("/usr/sbin/sshd")
BASH = Path("/bin/bash")  # stage scripts run with bash, as on every other host
TC = Path("/usr/sbin/tc")  # iproute2's: busybox's has no netem (link conditions, guestnet)
ROOT_SPARE = 1 << 30  # bytes of free space on a root disk (it is sparse: costs nothing)
# What of the standard library an agent never imports.
STDLIB_LEFT_OUT = (
    "test", "site-packages", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
    "config-*", "_tkinter*", "__phello__",
)  # fmt: skip
PASSWD = "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
SHADOW = "root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n"
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"


@dataclass(frozen=True)
class RootDisk:
    path: Path  # its folder in the cache
    disk: Path  # the ext4 image (raw, sparse); VMs boot it through a qcow2 overlay
    python: str  # the interpreter's path in the guest
    built: bool  # False: it was in the cache already


def _python_parts() -> tuple[Path, Path, Path | None]:
    """This Python's interpreter, its standard library, its libpython (if shared)."""
    base = Path(sys.base_prefix)
    name = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    executable = base / "bin" / name
    if not executable.is_file():
        executable = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    stdlib = base / "lib" / name
    if not (stdlib / "os.py").is_file():
        raise ImageError(f"no standard library at {stdlib}")
    shared = None
    for line in _ldd(executable):
        if Path(line).name.startswith("libpython"):
            shared = Path(line)
    return executable, stdlib, shared


def _ldd(path: Path) -> list[str]:
    """The libraries (resolved paths) `path` loads, its loader included."""
    done = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=60)
    found = []
    for line in done.stdout.splitlines():
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match:
            found.append(match[1])
    return found


def _place(path: str, staging: Path) -> None:
    """`path` of this machine at the same path under `staging`, symbolic
    links (of folders too: /lib -> usr/lib) kept as links."""
    current = Path("/")
    parts = Path(path).parts[1:]
    for i, part in enumerate(parts):
        candidate = current / part
        target = staging / candidate.relative_to("/")
        if candidate.is_symlink():
            link = os.readlink(candidate)
            if not target.is_symlink() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(link)
            resolved = (current / link) if not link.startswith("/") else Path(link)
            rest = "/".join(parts[i + 1 :])
            _place(os.path.normpath(resolved / rest if rest else resolved), staging)
            return
        if i == len(parts) - 1:
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(candidate, target)
            return
        target.mkdir(parents=True, exist_ok=True)
        current = candidate


def _root_key(busybox: bytes, wheels_key: str) -> str:
    """What goes in: the binaries' bytes, the standard library's files by
    name, size and time, the wheelhouse's key (itself a hash of phalanx's
    files and the agent's requirements), the files written for the guest."""
    executable, stdlib, shared = _python_parts()
    digest = hashlib.sha256()
    written = (PASSWD, GROUP, SHADOW, NSSWITCH, GUEST_PREFIX, *STDLIB_LEFT_OUT)
    parts: list[bytes] = [str(ROOT_FORMAT).encode(), busybox, wheels_key.encode()]
    parts += [text.encode() for text in written]
    for path in (executable, shared, SSHD, BASH, TC):
        if path is not None:
            parts.append(path.read_bytes())
    for path in sorted(stdlib.rglob("*")):
        if "site-packages" in path.parts or "test" in path.parts:
            continue
        with contextlib.suppress(OSError):
            stat = path.stat()
            parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return "root-" + digest.hexdigest()[:24]


def build_root_disk(root: Path | None = None) -> RootDisk:
    """The disk-root image (ext4), built unless the cache has it: busybox,
    this Python (interpreter, libraries, standard library), the agent's
    packages from the wheelhouse, bash, OpenSSH's sshd. A VM that boots it (the
    kernel command line says `phalanx.root=disk`) shares nothing with this
    machine over 9p, so QEMU can save, restore and migrate it."""
    from phalanx.providers.wheelhouse import Target, WheelhouseError, wheelhouse

    root = root or cache_root()
    for tool in ("mkfs.ext4", "ldd", "ldconfig"):
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} is not installed (apt-get install e2fsprogs libc-bin)")
    if not SSHD.is_file():
        raise ImageError(f"no {SSHD}; install it with: apt-get install openssh-server")
    if not BASH.is_file():
        raise ImageError(f"no {BASH}; install it with: apt-get install bash")
    if not TC.is_file():
        raise ImageError(f"no {TC}; install it with: apt-get install iproute2")
    busybox = find_busybox()
    try:
        wheels = wheelhouse(Target(sys.version_info[:2], platform.machine()))
    except WheelhouseError as exc:
        raise ImageError(f"no wheelhouse for the agent: {exc}") from exc
    python = f"{GUEST_PREFIX}/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
    path = root / _root_key(busybox, wheels.key)
    if (path / "image.json").is_file():
        cache.taken(path)
        return RootDisk(path, path / "root.ext4", python, built=False)
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".building-root-", dir=root))
    try:
        staging = building / "staging"
        _stage_root(staging, busybox, wheels.path)
        size = ROOT_SPARE + sum(f.lstat().st_size for f in staging.rglob("*")) * 5 // 4
        disk = building / "root.ext4"
        done = subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", ROOT_SERIAL, "-d", str(staging), "-E",
             "root_owner=0:0", str(disk), str(size // 1024) + "k"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            raise ImageError(f"mkfs.ext4 could not make the root disk: {done.stderr.strip()}")
        shutil.rmtree(staging)
        meta = {"format": ROOT_FORMAT, "python": python, "wheelhouse": wheels.key, "size": size}
        _publish(building, path, meta)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    cache.taken(path)
    return RootDisk(path, path / "root.ext4", python, built=True)


def _place_tc(staging: Path) -> None:
    """iproute2's tc in place of busybox's applet (which has no netem)."""
    for name in ("usr/sbin/tc", "sbin/tc"):
        applet = staging / name
        if applet.is_symlink() and os.readlink(applet) == "/bin/busybox":
            applet.unlink()
    _place(str(TC), staging)


def _stage_root(staging: Path, busybox: bytes, wheels: Path) -> None:
    """The root disk's files, as a folder for `mkfs.ext4 -d`."""
    staging.mkdir()
    # This machine's layout of /bin, /lib, ... (merged /usr: links).
    for name in ("bin", "sbin", "lib", "lib64"):
        host = Path("/") / name
        if host.is_symlink():
            (staging / name).symlink_to(os.readlink(host))
            (staging / os.path.normpath(os.readlink(host))).mkdir(parents=True, exist_ok=True)
        else:
            (staging / name).mkdir()
    for name in ("proc", "sys", "dev", "run", "tmp", "mnt", "root", "etc/ssh", "var/lib/phalanx"):
        (staging / name).mkdir(parents=True, exist_ok=True)
    (staging / "tmp").chmod(0o1777)
    (staging / "root").chmod(0o700)
    (staging / "bin" / "busybox").write_bytes(busybox)
    (staging / "bin" / "busybox").chmod(0o755)
    listed = subprocess.run(
        [str(staging / "bin" / "busybox"), "--list-full"], capture_output=True, text=True
    ).stdout.split()
    for applet in listed:
        link = staging / applet
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    for name, text in (("passwd", PASSWD), ("group", GROUP), ("shadow", SHADOW),
                       ("nsswitch.conf", NSSWITCH), ("hosts", "127.0.0.1 localhost\n"),
                       ("ld.so.conf", f"{GUEST_PREFIX}/lib\n")):  # fmt: skip
        (staging / "etc" / name).write_text(text)
    (staging / "etc" / "shadow").chmod(0o600)
    # This Python at /usr/local, its own libpython beside it.
    executable, stdlib, shared = _python_parts()
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    prefix = staging / GUEST_PREFIX.lstrip("/")
    (prefix / "bin").mkdir(parents=True)
    shutil.copy2(executable, prefix / "bin" / version)
    for alias in ("python3", "python"):
        (prefix / "bin" / alias).symlink_to(version)
    guest_stdlib = prefix / "lib" / version
    shutil.copytree(stdlib, guest_stdlib, symlinks=True,
                    ignore=shutil.ignore_patterns(*STDLIB_LEFT_OUT))  # fmt: skip
    if shared is not None:
        shutil.copy2(shared, prefix / "lib" / shared.name)
    site = guest_stdlib / "site-packages"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-index", "--find-links", str(wheels), "--target", str(site),
         "--no-warn-script-location", "phalanx"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ImageError(f"pip could not install the agent's packages: {last}")
    # Every library the interpreter, its extension modules, the agent's
    # packages and sshd load, at this machine's paths.
    elves = [executable, SSHD, BASH, TC]
    elves += [p for p in [*guest_stdlib.rglob("*.so"), *site.rglob("*.so")] if p.is_file()]
    needed: set[str] = set()
    for elf in elves:
        needed.update(_ldd(elf))
    for library in sorted(needed):
        if Path(library).name.startswith("libpython"):
            continue
        _place(library, staging)
    _place(str(SSHD), staging)
    bash = staging / BASH.relative_to("/")
    if bash.is_symlink():  # busybox's applet: bash itself replaces it
        bash.unlink()
    _place(str(BASH), staging)
    _place_tc(staging)
    done = subprocess.run(["ldconfig", "-r", str(staging)], capture_output=True, text=True)
    if done.returncode != 0:
        raise ImageError(f"ldconfig could not index the root disk's libraries: {done.stderr}")
