"""@tag@ values for one host, and their substitution into scripts.

Tags are substituted before a script runs and exported as PHALANX_*
environment variables, so a script can use either form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Annotations only: the agent reads XRDTEST_FUNCTIONS from here, and
    # phalanx.model is a tenth of its imports before it can connect.
    from phalanx.model import Host, Script, Suite

_TAG = re.compile(r"@([A-Za-z_][A-Za-z0-9_.:-]*)@")

# Where XrdTest scripts source its helper library from, and what phalanx
# reads instead: the agent's copy, named by $PHALANX_XRDTEST_FUNCTIONS
# (that very path on an agent started with --install-xrdtest-functions).
XRDTEST_FUNCTIONS = "/etc/XrdTest/utils/functions.sh"
FUNCTIONS_REF = '"${PHALANX_XRDTEST_FUNCTIONS:-' + XRDTEST_FUNCTIONS + '}"'
_SOURCE_XRDTEST = re.compile(
    r"^([ \t]*)(?:source|\.)[ \t]+([\"']?)" + re.escape(XRDTEST_FUNCTIONS) + r"\2(?=[ \t;]|$)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class RunContext:
    """What a run knows about where it is: ids and the coordinator's address."""

    run_id: str
    coordinator: str  # host name or address of the coordinator
    port: int  # its web port
    proto: str = "http"
    # Where the run's stages fetch its suite files with its capability
    # (coordinator/scripts.py); "" where there is none.
    scripts_url: str = ""


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
            "scripts_url": run.scripts_url,
            "diskmounts": diskmounts,
            "address": addresses.get(host.name, ""),
            "functions": FUNCTIONS_REF,
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


def xrdtest_sources(text: str) -> str:
    """`source /etc/XrdTest/utils/functions.sh` (or `. …`) made to read the
    agent's copy of the library, so an XrdTest script runs unchanged on a
    host where nothing is installed under /etc."""
    return _SOURCE_XRDTEST.sub(lambda m: f"{m.group(1)}. {FUNCTIONS_REF}", text)


def environment(values: Mapping[str, str]) -> dict[str, str]:
    """The PHALANX_* variables for the tag values: PHALANX_SLAVENAME,
    PHALANX_HOST_<NAME> for @host:NAME@, PHALANX_TAG_<NAME> for suite tags."""
    builtin = {
        "slavename", "hostname", "shortname", "role", "run_id", "coordinator",
        "port", "proto", "diskmounts", "logfiles", "address", "scripts_url",
    }  # fmt: skip
    env: dict[str, str] = {}
    for key, value in values.items():
        if key == "functions":
            continue  # the agent sets PHALANX_XRDTEST_FUNCTIONS itself
        if key.startswith("host:"):
            env[f"PHALANX_HOST_{_env_name(key[5:])}"] = value
        elif key in builtin:
            env[f"PHALANX_{key.upper()}"] = value
        else:
            env[f"PHALANX_TAG_{_env_name(key)}"] = value
    return env


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


@dataclass(frozen=True)
class Unfilled:
    """An @tag@ in a script that no host of the suite would fill: it would
    run as written, which is almost always a typo or a missing host."""

    origin: str  # the script's file, or "inline"
    line: int  # within the script's text
    where: str  # suite.initialize, CASE.run, ...
    tag: str

    def __str__(self) -> str:
        at = f"{self.origin}:{self.line}" if self.origin != "inline" else f"{self.where} (inline)"
        return f"{at}: @{self.tag}@ is filled by no host of the suite"


def unfilled(suite: Suite) -> list[Unfilled]:
    """Every @tag@ in `suite`'s scripts that no host's tag values hold."""
    run = RunContext("run", "coordinator", 0)
    addresses = {h.name: "address" for h in suite.hosts}
    known: set[str] = set()
    for host in suite.hosts:
        known.update(tag_values(suite, host, run, addresses))
    scripts: list[tuple[str, Script]] = [
        (f"suite.{stage}", script)
        for stage in ("initialize", "finalize")
        if (script := getattr(suite, stage)) is not None
    ]
    scripts += [
        (f"{c.name}.{stage}", script) for c in suite.cases for stage, script in c.stages.items()
    ]
    found: list[Unfilled] = []
    for where, script in scripts:
        for number, line in enumerate(script.text.splitlines(), start=1):
            for match in _TAG.finditer(line):
                if match.group(1) not in known:
                    found.append(Unfilled(script.origin, number, where, match.group(1)))
    return found
