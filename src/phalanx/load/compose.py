"""A compose file (docker-compose.yml, compose.yaml) as a cluster's hosts:
each service is a container host (provider: podman) named by its
`hostname` or, else, its service name, with the service name for role.

| compose key | what the host gets |
| --- | --- |
| `image` / `build` (context, dockerfile) | its image (built by the engine) |
| `command`, `entrypoint` | its own process, as compose runs it; the agent runs beside it |
| `environment`, `env_file` | its environment |
| `volumes` | bind mounts (relative to the file); a named volume is a volume of its own for the run |
| `depends_on` with `condition: service_healthy`, `healthcheck` | the run waits for the healthcheck before the suite's initialize |
| `networks` (their `aliases`), `hostname`, `container_name` | names in every host's /etc/hosts; every service is on the cluster's one bridge |
| `working_dir`, `user` | as in compose |
| `ports` (TCP, with the published port) | this machine's `host_ip:published` forwarded by phalanx to the service's address on the bridge |

Other keys are not honoured: `unhonoured` lists them for `phalanx
validate`'s one warning. Every error names the file, the line and the key.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dotenv

from phalanx.load import fields, netaddr, yamlsrc
from phalanx.load.errors import DefinitionError, DefinitionErrors
from phalanx.load.fields import FieldError
from phalanx.load.interpolate import InterpolationError, interpolate_all
from phalanx.model import Disk, Healthcheck, Host, PublishedPort, Service

HONOURED = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "volumes",
    "depends_on", "healthcheck", "networks", "hostname", "container_name", "working_dir", "user",
    "ports",
}  # fmt: skip
TOP_KEYS = {"services", "volumes", "networks", "version", "name"}
_VOLUME_NAME = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9_.-]*"
)  # fullmatch: "$" would pass a trailing newline


def load_compose(file: Path) -> tuple[tuple[Host, ...], tuple[str, ...]]:
    """The hosts of `file`'s services, and the keys it uses that phalanx
    does not honour (as `services.NAME.KEY`); DefinitionErrors otherwise."""
    src = yamlsrc.read(file)
    errors: list[DefinitionError] = []
    # As compose does: this process's environment over the file's .env.
    dot_env = file.parent / ".env"
    found = dotenv.dotenv_values(dot_env) if dot_env.is_file() else {}
    variables = {**{k: v or "" for k, v in found.items()}, **os.environ}
    try:
        data = interpolate_all(src.data, variables)
    except InterpolationError as exc:
        raise DefinitionErrors([src.error(str(exc), *exc.path)]) from None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise DefinitionErrors([src.error("a compose file is a mapping with `services`")])
    unhonoured = [str(k) for k in data if k not in TOP_KEYS]
    services: dict[str, Any] = data["services"]
    names: dict[str, str] = {}
    for service, raw in services.items():
        hostname = raw.get("hostname") if isinstance(raw, dict) else None
        names[str(service)] = str(hostname or service)
    hosts = []
    for service, raw in services.items():
        at = ("services", service)
        if not isinstance(raw, dict):
            errors.append(src.error("a service is a mapping", *at))
            continue
        unhonoured += [f"services.{service}.{k}" for k in raw if k not in HONOURED]

        def wrong(key: str, message: str, *more: str | int, _at: tuple[str, ...] = at) -> None:
            errors.append(src.error(message, *_at, key, *more))

        host = _host(file.parent, str(service), raw, names, wrong)
        if host is not None:
            hosts.append(host)
    if errors:
        raise DefinitionErrors(errors)
    return tuple(hosts), tuple(unhonoured)


def _host(
    folder: Path,
    service: str,
    raw: dict[str, Any],
    names: dict[str, str],
    wrong: Callable[..., None],
) -> Host | None:
    try:
        name = netaddr.hostname(names[service])
    except FieldError as exc:
        wrong("hostname" if "hostname" in raw else "image", f"{names[service]!r}: {exc}")
        return None
    values: dict[str, Any] = {}
    for key, convert in _CONVERTERS.items():
        if key in raw and raw[key] is not None:
            try:
                values[key] = convert(raw[key], folder)
            except FieldError as exc:
                wrong(key, str(exc))
    image = values.pop("image", None)
    build = values.pop("build", None)
    if image is None and build is None:
        wrong("image", "missing: a service needs an `image` or a `build`")
        return None
    if image is None:
        image = f"localhost/phalanx-compose-{service}:latest"
    environment = {**values.pop("env_file", {}), **values.pop("environment", {})}
    depends = values.pop("depends_on", {})
    unknown = [d for d in depends if d not in names]
    if unknown:
        wrong("depends_on", f"no service {unknown[0]!r} in this file")
        return None
    volumes, disks = values.pop("volumes", ((), ()))
    aliases = dict.fromkeys(
        a
        for a in (service, raw.get("container_name"), *values.pop("networks", ()))
        if a and a != name
    )
    try:
        checked = tuple(netaddr.hostname(str(a)) for a in aliases)
    except FieldError as exc:
        wrong("networks", str(exc))
        return None
    context, dockerfile = build if build is not None else (None, None)
    return Host(
        name=name,
        roles=(service,),
        aliases=checked,
        image=image,
        disks=disks,
        service=Service(
            build=context,
            dockerfile=dockerfile,
            command=values.get("command"),
            entrypoint=values.get("entrypoint"),
            environment=environment,
            volumes=volumes,
            healthcheck=values.get("healthcheck"),
            healthy_before=tuple(names[d] for d, healthy in depends.items() if healthy),
            working_dir=values.get("working_dir"),
            user=values.get("user"),
            ports=values.get("ports", ()),
        ),
    )


def _argv(value: Any, _: Path) -> tuple[str, ...]:
    """A command: a list as is, a string split as a shell would."""
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise FieldError(f"cannot split {value!r}: {exc}") from None
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return tuple(str(v) for v in value)
    raise FieldError("must be a command: a string or a list of strings")


def _environment(value: Any, _: Path) -> dict[str, str]:
    if isinstance(value, list):
        pairs: dict[str, str] = {}
        for item in value:
            key, has, text = str(item).partition("=")
            if not key:
                raise FieldError(f"{item!r} is not KEY=VALUE")
            if has:
                pairs[key] = text
        return pairs
    return {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in fields.mapping(value).items()}  # fmt: skip


def _env_file(value: Any, folder: Path) -> dict[str, str]:
    files = fields.names(value) if not isinstance(value, list) else value
    found: dict[str, str] = {}
    for entry in files:
        path_text = entry.get("path") if isinstance(entry, dict) else entry
        required = entry.get("required", True) if isinstance(entry, dict) else True
        path = folder / str(path_text)
        if not path.is_file():
            if required:
                raise FieldError(f"no file {path}")
            continue
        found.update({k: v or "" for k, v in dotenv.dotenv_values(path).items()})
    return found


def _volumes(value: Any, folder: Path) -> tuple[tuple[str, ...], tuple[Disk, ...]]:
    """Bind mounts by absolute path; named volumes as the host's disks."""
    if not isinstance(value, list):
        raise FieldError("must be a list of volumes")
    binds: list[str] = []
    disks: list[Disk] = []
    for item in value:
        if isinstance(item, dict):
            source, target = item.get("source"), item.get("target")
            mode = "ro" if item.get("read_only") else ""
        else:
            parts = str(item).split(":")
            if len(parts) == 1:
                source, target, mode = None, parts[0], ""
            else:
                source, target, mode = parts[0], parts[1], ":".join(parts[2:])
        if not target or not str(target).startswith("/"):
            raise FieldError(f"{item!r}: the path in the container must be absolute")
        if any(not str(part).isprintable() for part in (source or "", target)):
            raise FieldError(f"{item!r}: a volume's source and target are one printable line")
        if source is None or (_VOLUME_NAME.fullmatch(str(source)) and "/" not in str(source)):
            volume = str(source or f"anon{len(disks)}")
            disks.append(Disk(name=volume, size=0, mount_point=str(target)))
            continue
        host_path = (folder / Path(str(source)).expanduser()).resolve()
        binds.append(":".join(p for p in (str(host_path), str(target), mode) if p))
    return tuple(binds), tuple(disks)


def _depends_on(value: Any, _: Path) -> dict[str, bool]:
    """Each service depended on, and whether it must be healthy first."""
    if isinstance(value, list):
        return dict.fromkeys(fields.names(value), False)
    found = {}
    for name, how in fields.mapping(value).items():
        condition = how.get("condition") if isinstance(how, dict) else None
        found[name] = condition == "service_healthy"
    return found


def _healthcheck(value: Any, _: Path) -> Healthcheck | None:
    raw = fields.mapping(value)
    if raw.get("disable"):
        return None
    test = raw.get("test")
    if isinstance(test, str):
        argv: tuple[str, ...] = ("/bin/sh", "-c", test)
    elif isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL", "NONE"):
        if test[0] == "NONE":
            return None
        argv = (
            ("/bin/sh", "-c", " ".join(test[1:]))
            if test[0] == "CMD-SHELL"
            else tuple(str(t) for t in test[1:])
        )
    else:
        raise FieldError("test: must be a string, or a list starting CMD or CMD-SHELL")
    retries = raw.get("retries", 60)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 1:
        raise FieldError("retries: must be a whole number from 1")
    return Healthcheck(
        test=argv,
        interval=fields.seconds(raw.get("interval", 1)),
        timeout=fields.seconds(raw.get("timeout", 30)),
        retries=retries,
    )


def _networks(value: Any, _: Path) -> tuple[str, ...]:
    """The service's aliases on its networks (all of them one bridge here)."""
    if isinstance(value, list):
        return ()
    aliases: list[str] = []
    for how in fields.mapping(value).values():
        if isinstance(how, dict):
            aliases += fields.names(how.get("aliases") or [])
    return tuple(aliases)


def _build(value: Any, folder: Path) -> tuple[str, str | None]:
    if isinstance(value, str):
        return str((folder / value).resolve()), None
    raw = fields.mapping(value)
    context = str((folder / str(raw.get("context", "."))).resolve())
    dockerfile = raw.get("dockerfile")
    return context, str(Path(context) / str(dockerfile)) if dockerfile else None


def _ports(value: Any, _: Path) -> tuple[PublishedPort, ...]:
    """`ports:` in compose's short (`[HOST_IP:]PUBLISHED:TARGET[/tcp]`) or
    long syntax. A container in a namespace phalanx made gets no forwarding
    from the engine: phalanx forwards each itself, so it takes only what it
    can forward as said (TCP, one port, a published port given)."""
    if not isinstance(value, list):
        raise FieldError("must be a list of ports")
    return tuple(_port(item) for item in value)


def _port(item: Any) -> PublishedPort:
    if isinstance(item, dict):
        host_ip, published = str(item.get("host_ip") or ""), item.get("published")
        target, protocol = item.get("target"), str(item.get("protocol") or "tcp")
    else:
        text, _, protocol = str(item).partition("/")
        # The last two are the ports; before them, an address (IPv6 in brackets).
        *address, published, target = ["", "", *text.rsplit(":", 2)]
        host_ip = address[-1].removeprefix("[").removesuffix("]")
        protocol = protocol or "tcp"
    if protocol != "tcp":
        raise FieldError(f"{item!r}: only TCP ports are forwarded, not {protocol}")
    if published in (None, ""):
        raise FieldError(
            f"{item!r}: give the published port too (PUBLISHED:TARGET): phalanx picks none, "
            "and every service is also reached at its own address on the bridge"
        )
    numbers = []
    for port in (published, target):
        text = str(port)
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise FieldError(
                f"{item!r}: {text!r} is not one port (1-65535; ranges are not forwarded)"
            )
        numbers.append(int(text))
    return PublishedPort(host_ip=host_ip or "0.0.0.0", published=numbers[0], target=numbers[1])


def _text(value: Any, _: Path) -> str:
    return fields.text(value)


_CONVERTERS: dict[str, Callable[[Any, Path], Any]] = {
    "image": _text,
    "build": _build,
    "command": _argv,
    "entrypoint": _argv,
    "environment": _environment,
    "env_file": _env_file,
    "volumes": _volumes,
    "depends_on": _depends_on,
    "healthcheck": _healthcheck,
    "networks": _networks,
    "working_dir": _text,
    "user": _text,
    "ports": _ports,
}
