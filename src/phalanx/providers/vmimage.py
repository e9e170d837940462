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

Nothing is downloaded: the kernel is the newest one installed with 9p
support (Debian: `linux-image-amd64`; the `cloud` flavour has no 9p), and
busybox must be the static one (`busybox-static`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

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
    "ext4",
    "evdev",
    "button",  # the ACPI power button (QMP `system_powerdown`), read by acpid from evdev
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
mkdir -p /lower /rw /newroot /seed
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower \
    || fail "cannot mount the host's file system (9p hostroot)"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || fail "cannot lay a tmpfs over the host's file system (overlayfs)"
mount -t 9p -o trans=virtio,version=9p2000.L,ro seed /seed || fail "cannot mount the seed (9p)"
cp /seed/vm.env /vm.env
[ -f /seed/hosts ] && cp /seed/hosts /hosts
token=$(cat /seed/token)
umount /seed
. /vm.env
hostname "$PHALANX_NAME"
ip link set lo up
ip link set eth0 up
ip addr add "$PHALANX_ADDRESS" dev eth0
ip route add default via "$PHALANX_GATEWAY"
for d in proc sys dev; do mount --move "/$d" "/newroot/$d"; done
# /tmp stays the host's, under the overlay: the Python and phalanx this VM
# runs may live there (a checkout or venv in /tmp). The folders of VM seeds
# and disks are hidden, so no stage reads a VM's token through the 9p root:
# they live under /run when this machine allows (every guest mounts a fresh
# /run below), else under /tmp, where each is masked here.
for private in "/newroot$PHALANX_PRIVATE" /newroot/tmp/phalanx-qemu-*; do
    [ -d "$private" ] && mount -t tmpfs -o mode=0700 private "$private"
done
mount -t tmpfs -o mode=0755 phalanx /newroot/run
mkdir -p /newroot/run/phalanx/acpi/PWRF /newroot/dev/pts /newroot/dev/shm /newroot/etc
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs shm /newroot/dev/shm
cp /bin/busybox /stage2 /mount-disk /newroot/run/phalanx/
cp /poweroff /newroot/run/phalanx/acpi/PWRF/00000080
umask 077
printf '%s' "$token" > /newroot/run/phalanx/token
umask 022
printf '%s\n' "$PHALANX_NAME" > /newroot/etc/hostname
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
PHALANX_AGENT_TOKEN=$($bb cat /run/phalanx/token)
$bb rm -f /run/phalanx/token
export PHALANX_AGENT_TOKEN PHALANX_HOSTNAME="$PHALANX_NAME" HOME=/root
export PATH="$PHALANX_PATH"
$bb acpid -d -c /run/phalanx/acpi &
$bb mkdir -p "$PHALANX_WORKDIR"
cd "$PHALANX_WORKDIR"
echo "phalanx-vm: starting the agent ($PHALANX_PYTHON, coordinator $PHALANX_URL)"
"$PHALANX_PYTHON" -m phalanx.host --coordinator "$PHALANX_URL" --name "$PHALANX_NAME" \
    --workdir "$PHALANX_WORKDIR" --give-up "$PHALANX_GIVE_UP" </dev/null &
echo $! > /run/phalanx/agent.pid
unset PHALANX_AGENT_TOKEN
wait
echo "phalanx-vm: the agent exited; powering off"
$bb sync
$bb poweroff -f
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
    scripts = (INIT, STAGE2, POWEROFF, MOUNT_DISK)
    parts = [str(FORMAT).encode(), kernel_bytes, busybox, *(s.encode() for s in scripts)]
    for part in parts + [m.read_bytes() for m in module_files(kernel)]:
        digest.update(hashlib.sha256(part).digest())
    path = root / digest.hexdigest()[:24]
    if (path / "image.json").is_file():
        meta = json.loads((path / "image.json").read_text())
        return Image(path, path / meta["boot"], path / "initramfs.img", kernel.version, False)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        elf = _uncompressed(kernel, kernel_bytes)
        boot = "vmlinux" if elf is not None else "vmlinuz"
        (staging / boot).write_bytes(elf if elf is not None else kernel_bytes)
        (staging / "initramfs.img").write_bytes(initramfs(kernel, busybox))
        meta = {"kernel": kernel.version, "format": FORMAT, "from": str(kernel.image), "boot": boot}
        (staging / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        staging.chmod(0o755)
        try:
            staging.rename(path)
        except OSError:
            if not (path / "image.json").is_file():  # not another build that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Image(path, path / boot, path / "initramfs.img", kernel.version, built=True)
