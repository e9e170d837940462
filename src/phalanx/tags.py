"""@tag@ values for one host, and their substitution into scripts.

Tags are substituted before a script runs and exported as PHALANX_*
environment variables, so a script can use either form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from phalanx.model import Host, Suite

_TAG = re.compile(r"@([A-Za-z_][A-Za-z0-9_.:-]*)@")


@dataclass(frozen=True)
class RunContext:
    """What a run knows about where it is: ids and the coordinator's address."""

    run_id: str
    coordinator: str  # host name or address of the coordinator
    port: int  # its web port
    proto: str = "http"


def tag_values(
    suite: Suite,
    host: Host,
    run: RunContext,
    addresses: Mapping[str, str],
    diskmounts: str = "",
) -> dict[str, str]:
    """Every @tag@ value for `host`. `addresses` maps each host's name to the
    address other hosts reach it at (the provider decides: loopback for local
    hosts, the cluster's IP for namespaces and VMs)."""
    values: dict[str, str] = dict(suite.tags)
    values.update(
        {
            "slavename": host.name,
            "hostname": host.name,
            "shortname": host.short_name,
            "role": ",".join(host.roles),
            "run_id": run.run_id,
            "coordinator": run.coordinator,
            "port": str(run.port),
            "proto": run.proto,
            "diskmounts": diskmounts,
            "address": addresses.get(host.name, ""),
        }
    )
    for other in suite.hosts:
        address = addresses.get(other.name, "")
        for alias in {other.name, other.short_name, *other.aliases}:
            values[f"host:{alias}"] = address
    values["logfiles"] = " ".join(render(path, values) for path in suite.logs)
    return values


def render(text: str, values: Mapping[str, str]) -> str:
    """Replace every known @tag@; unknown ones stay as written (a script may
    legitimately contain an e-mail address)."""

    def sub(match: re.Match[str]) -> str:
        return values.get(match.group(1), match.group(0))

    return _TAG.sub(sub, text)


def environment(values: Mapping[str, str]) -> dict[str, str]:
    """The PHALANX_* variables for the tag values: PHALANX_SLAVENAME,
    PHALANX_HOST_<NAME> for @host:NAME@, PHALANX_TAG_<NAME> for suite tags."""
    builtin = {
        "slavename", "hostname", "shortname", "role", "run_id", "coordinator",
        "port", "proto", "diskmounts", "logfiles", "address",
    }  # fmt: skip
    env: dict[str, str] = {}
    for key, value in values.items():
        if key.startswith("host:"):
            env[f"PHALANX_HOST_{_env_name(key[5:])}"] = value
        elif key in builtin:
            env[f"PHALANX_{key.upper()}"] = value
        else:
            env[f"PHALANX_TAG_{_env_name(key)}"] = value
    return env


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()
