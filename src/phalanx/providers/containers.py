"""The container engine, spoken to through its CLI: podman, or Docker where
that is what a machine has. Both take the same `run`, `exec`, `rm`,
`inspect`, `ps`, `volume` and `build` commands, so the provider has one code
path; what differs is decided here, once:

- podman is given runc (crun refuses a hybrid cgroup layout); Docker runs
  its own default runtime (runc);
- podman joins a container to a network namespace by path before its
  program starts; Docker joins none but another container's, so a Docker
  container starts without a network and its namespace is plumbed after,
  found by its first process (`joins_by_path`);
- podman writes the first process's pid to a file as it starts the
  container (one engine call less); Docker is asked (`inspect`);
- `rm --force` waits for a stop timeout on podman unless `--time 0`; on
  Docker it kills at once, and takes no `--time`.

The engine is PHALANX_CONTAINER_ENGINE (`podman`, `docker`, or a path to
either) when set, else the first of podman and docker on PATH.

Everything phalanx starts carries two labels: the run (`phalanx.run`) and
its owner, the phalanx process with its start time (`phalanx.owner`). The
engine is the record: a sweep removes the containers and volumes of owners
that are dead, and never those of a live run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from phalanx.providers.netns import process_started

log = logging.getLogger("phalanx.providers.containers")

ENGINE_ENV = "PHALANX_CONTAINER_ENGINE"
ENGINES = ("podman", "docker")
RUN_LABEL = "phalanx.run"
OWNER_LABEL = "phalanx.owner"
# Ulimits no higher than these: runc refuses a higher nproc here (podman
# 4.3 as root: 65536 fails, 32768 passes) though this process may have more.
NOFILE_CAP = 65536
NPROC_CAP = 32768
REMOVE_TRIES = 3
CALL_TIMEOUT = 120.0  # seconds for one engine command (a `run` pulls nothing: images are local)


class EngineError(Exception):
    """The engine is missing or a command of it failed; the message says what it said."""


@dataclass(frozen=True)
class Engine:
    path: str
    kind: str  # "podman" or "docker"

    async def call(
        self, *args: str, timeout: float = CALL_TIMEOUT, check: bool = True
    ) -> tuple[int, str, str]:
        """`engine args…`: exit code, stdout, stderr; EngineError when it
        fails and `check`, or does not end within `timeout`."""
        process = await asyncio.create_subprocess_exec(
            self.path,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except BaseException:
            # Cancelled or too slow: the engine's client goes with its group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise
        code = process.returncode or 0
        said_out, said_err = out.decode(errors="replace"), err.decode(errors="replace")
        if check and code != 0:
            said = said_err.strip() or said_out.strip() or f"exit code {code}"
            raise EngineError(f"{self.kind} {' '.join(args[:2])}: {said.splitlines()[-1]}")
        return code, said_out, said_err

    def runtime_options(self) -> list[str]:
        """The OCI runtime: runc on podman, where crun may be the default
        (Docker's default is runc)."""
        return ["--runtime", "runc"] if self.kind == "podman" and shutil.which("runc") else []

    def run_options(self) -> list[str]:
        """Options every container of phalanx's gets. runc: crun refuses a
        kernel's hybrid cgroup layout, and runc is on every machine podman
        and Docker run on. Explicit ulimits at this process's own hard
        limits: the engine's defaults may be above them, which the kernel
        refuses ("setrlimit … Operation not permitted")."""
        options = self.runtime_options()
        for name, limit, cap in (
            ("nofile", resource.RLIMIT_NOFILE, NOFILE_CAP),
            ("nproc", resource.RLIMIT_NPROC, NPROC_CAP),
        ):
            hard = resource.getrlimit(limit)[1]
            value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
            options += ["--ulimit", f"{name}={value}:{value}"]
        return options

    @property
    def joins_by_path(self) -> bool:
        """Whether a container can join a network namespace by its path as
        it starts (podman's `--network ns:PATH`)."""
        return self.kind == "podman"

    def build_options(self) -> list[str]:
        """`build`'s, for its RUN steps: podman's are `run_options`. Docker's
        builder takes no runtime, and the Docker Engine API's ulimits are
        read otherwise by podman's service: its steps get the engine's own."""
        return self.run_options() if self.kind == "podman" else []

    def network_option(self, netns: str) -> list[str]:
        """The container's network: the named namespace (`ip netns`) that
        phalanx made and plumbed on the cluster's bridge, where the engine
        joins one by path; else none of the engine's, for phalanx to plumb
        once the container runs (`ip netns attach` by its first process)."""
        if self.joins_by_path:
            return ["--network", f"ns:/run/netns/{netns}"]
        return ["--network", "none"]

    def pidfile_option(self, path: Path) -> list[str]:
        """Where the engine writes the container's first process's pid, if it can."""
        return ["--pidfile", str(path)] if self.kind == "podman" else []

    def remove_options(self) -> list[str]:
        """`rm`'s: forced, the processes killed at once."""
        return ["--force", "--time", "0"] if self.kind == "podman" else ["--force"]

    def label_field(self, key: str) -> str:
        """A label's value in a `ps` or `volume ls` --format template: podman
        shows the labels as a map, Docker as a string with a `Label` method."""
        if self.kind == "podman":
            return f'{{{{index .Labels "{key}"}}}}'
        return f'{{{{.Label "{key}"}}}}'

    async def inspect(self, *names: str) -> list[dict[str, object]]:
        _, out, _ = await self.call("inspect", "--type", "container", *names)
        shown = json.loads(out or "[]")
        return shown if isinstance(shown, list) else []

    async def image_exists(self, image: str) -> bool:
        return await self.image_id(image) is not None

    async def image_id(self, image: str) -> str | None:
        """The image's content id; None when the engine has no such image."""
        code, out, _ = await self.call(
            "image", "inspect", "--format", "{{.Id}}", image, check=False
        )
        return out.strip() or None if code == 0 else None


def engine() -> Engine:
    """The engine this machine has (see the module's doc); EngineError when none."""
    chosen = os.environ.get(ENGINE_ENV, "").strip()
    candidates = [chosen] if chosen else list(ENGINES)
    for candidate in candidates:
        path = shutil.which(candidate)
        if path is not None:
            name = Path(candidate).name
            kind = "docker" if "docker" in name else "podman"
            return Engine(path, kind)
    if chosen:
        raise EngineError(f"{ENGINE_ENV}={chosen}: no such program on PATH")
    raise EngineError(
        "container hosts need podman or docker on this machine "
        "(apt-get install podman runc), or PHALANX_CONTAINER_ENGINE set to one"
    )


def labels(run_id: str, owner: str) -> list[str]:
    return ["--label", f"{RUN_LABEL}={run_id}", "--label", f"{OWNER_LABEL}={owner}"]


def owner_mark(pid: int | None = None) -> str:
    """This process as a container's owner: its pid and its start time
    (against a reused pid)."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{process_started(pid) or ''}"


def owner_alive(mark: str) -> bool:
    pid, _, started = mark.partition(":")
    return pid.isdigit() and bool(started) and process_started(int(pid)) == started


async def _labelled(kind: Engine, what: Sequence[str]) -> list[tuple[str, str, str]]:
    """(name, run, owner) of every container or volume phalanx made."""
    name = "{{.Names}}" if what[0] == "ps" else "{{.Name}}"
    fmt = f"{name}\t{kind.label_field(RUN_LABEL)}\t{kind.label_field(OWNER_LABEL)}"
    _, out, _ = await kind.call(*what, "--filter", f"label={OWNER_LABEL}", "--format", fmt)
    found = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            found.append((parts[0], parts[1], parts[2]))
    return found


async def remove(kind: Engine, containers: Sequence[str], volumes: Sequence[str] = ()) -> None:
    """Containers (with their processes, at once) and then volumes; what is
    already gone is no error."""
    left = list(containers)
    said = ""
    # A busy engine sometimes fails a removal (a lock held by a container
    # still starting): those still there are asked again, a bounded number
    # of times, and what stays is an error that names them.
    for _ in range(REMOVE_TRIES):
        if not left:
            break
        code, _, said = await kind.call("rm", *kind.remove_options(), *left, check=False)
        if code == 0:
            left = []
            break
        _, out, _ = await kind.call(
            "ps", "--all", "--format", "{{.Names}}", *_name_filters(left), check=False
        )
        there = set(out.split())
        left = [name for name in left if name in there]
    if volumes:
        await kind.call("volume", "rm", "--force", *volumes, check=False)
    if left:
        why = said.strip().splitlines()[-1] if said.strip() else "no reason given"
        raise EngineError(f"{kind.kind} rm: {', '.join(left)} still there ({why})")


def _name_filters(names: Sequence[str]) -> list[str]:
    return [arg for name in names for arg in ("--filter", f"name=^{name}$")]


async def sweep(kind: Engine | None = None) -> dict[str, list[str]]:
    """Remove the containers and volumes of runs whose owner is dead; per
    run id, what went. Nothing when there is no engine here."""
    if kind is None:
        try:
            kind = engine()
        except EngineError:
            return {}
    swept: dict[str, list[str]] = {}
    found = await asyncio.gather(
        _labelled(kind, ["ps", "--all"]), _labelled(kind, ["volume", "ls"])
    )
    containers = [c for c in found[0] if not owner_alive(c[2])]
    volumes = [v for v in found[1] if not owner_alive(v[2])]
    try:
        await remove(kind, [c[0] for c in containers], [v[0] for v in volumes])
    except EngineError as exc:  # a later sweep tries again
        log.warning("removing what dead runs left: %s", exc)
    for name, run, _ in containers:
        swept.setdefault(run, []).append(f"container {name}")
    for name, run, _ in volumes:
        swept.setdefault(run, []).append(f"volume {name}")
    return swept
