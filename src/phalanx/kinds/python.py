"""Python role tests (the CloudPunch contract).

A case of kind `python` names one or more classes (`module:ClassName`). On
every host of the case's roles the agent constructs `ClassName(config)` and
runs `run()` in a thread (a `threading.Thread` subclass is started and joined
as it is); `final_results` is that host's result.

`config` = suite params + case params + every key CloudPunch gives a test
(`server_client_mode`, `servers_give_results`, `overtime_results`,
`network_mode`, `test`, `test_mode`, `test_start_delay`, `role`,
`match_ip`) + `hostname` and `match_host`. In server/client mode server i
pairs with client i and each gets the other's address (`match_ip`) and name
(`match_host`); unpaired, or with the mode off, both are None. With the
mode off only servers run the test. The CloudPunch keys are case options;
their values override params of the same name.

The module's source travels in the task (loaded from the definitions repo);
no pickle, no code but the definitions' own.
"""

from __future__ import annotations

from typing import Any

from phalanx.kinds import checks
from phalanx.kinds.base import CaseSpec, OptionError, StageContext, judge_exit
from phalanx.kinds.scripts import OwnRun, takes_part
from phalanx.model import Case, Host, Status, Suite
from phalanx.tasks import Outcome, PythonTask, Task
from phalanx.tasks.python import TEST_MODES, result_keys

SERVER, CLIENT = "server", "client"
NETWORK_MODES = ("full", "single-router", "single-network")
# CloudPunch's defaults, except server_client_mode: phalanx's cases run
# without a partner unless they ask for one. servers_give_results is on as
# CloudPunch's documentation says (its code defaults it off), and as phalanx
# always kept servers' results.
CLOUDPUNCH_KEYS: dict[str, Any] = {
    "server_client_mode": False,
    "servers_give_results": True,
    "overtime_results": False,
    "network_mode": "full",
    "test_mode": "list",
    "test_start_delay": 0,
}
EMPTY_RESULTS: tuple[object, ...] = (None, "", {}, [])


def role_of(host: Host) -> str:
    if SERVER in host.roles:
        return SERVER
    if CLIENT in host.roles:
        return CLIENT
    return host.roles[0] if host.roles else SERVER


def pairs(hosts: tuple[Host, ...]) -> dict[str, str]:
    """Server i ↔ client i, by cluster order: host name → its partner's name."""
    servers = [h.name for h in hosts if role_of(h) == SERVER]
    clients = [h.name for h in hosts if role_of(h) == CLIENT]
    matched: dict[str, str] = {}
    for server, client in zip(servers, clients, strict=False):
        matched[server], matched[client] = client, server
    return matched


def classes(case: Case) -> list[str]:
    spec = case.options.get("class") or case.options.get("classes")
    return [spec] if isinstance(spec, str) else list(spec or [])


def setting(case: Case, key: str) -> Any:
    """A CloudPunch key's value for `case`: its option, or the default."""
    value = case.options.get(key)
    return CLOUDPUNCH_KEYS[key] if value is None else value


def gives_results(case: Case, host: Host) -> bool:
    """CloudPunch's rule: in server/client mode servers report only when
    `servers_give_results` is on; clients (and every host without the mode)
    always do."""
    if not setting(case, "server_client_mode") or role_of(host) != SERVER:
        return True
    return bool(setting(case, "servers_give_results"))


def host_config(suite: Suite, case: Case, host: Host, addresses: dict[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = {**suite.params, **case.params}
    config.update({key: setting(case, key) for key in CLOUDPUNCH_KEYS})
    # CloudPunch names tests by module (`ping` for ping.py).
    config["test"] = list(dict.fromkeys(result_keys(classes(case)).values()))
    config["role"] = role_of(host)
    config["hostname"] = host.name
    partner = pairs(suite.hosts).get(host.name) if config["server_client_mode"] else None
    config["match_ip"] = addresses.get(partner, "") if partner else None
    # Locally every host's address is loopback; the partner's name tells
    # pairs apart (e.g. as a phalanx.send/wait key).
    config["match_host"] = partner
    return config


class PythonTests(OwnRun):
    name = "python"
    options = frozenset({"class", "classes", "python", *CLOUDPUNCH_KEYS})

    def prepare(self, spec: CaseSpec) -> dict[str, Any]:
        opts = spec.options
        if "class" in opts and "classes" in opts:
            raise OptionError("give `class` or `classes`, not both", "classes")
        key = "classes" if "classes" in opts else "class"
        value = opts.get(key)
        listed = isinstance(value, list)
        specs = value if isinstance(value, list) else [value]
        if not specs or not all(isinstance(s, str) for s in specs):
            raise OptionError(
                "a python case names its test as `class: module:ClassName` (or a list)", key
            )
        found: dict[str, str] = {}
        defined: dict[str, set[str]] = {}
        for index, item in enumerate(specs):
            at = (key, index) if listed else (key,)
            module, _, name = item.partition(":")
            if not module or not name:
                raise OptionError(f"{item!r}: expected module:ClassName", *at)
            if module not in found:
                found[module] = checks.source(spec, module, *at)
                defined[module] = checks.defined_names(module, found[module], *at)
            if name not in defined[module]:
                raise OptionError(f"module {module!r} defines no class {name}", *at)
        checks.choice(opts, "test_mode", TEST_MODES)
        checks.number(opts, "test_start_delay")
        checks.boolean(opts, "server_client_mode")
        checks.boolean(opts, "servers_give_results")
        checks.boolean(opts, "overtime_results")
        checks.choice(opts, "network_mode", NETWORK_MODES)
        checks.text(opts, "python")
        return {**opts, "modules": found}

    def run_task(self, ctx: StageContext, case: Case) -> Task | None:
        if not takes_part(case, ctx.host):
            return None
        if not setting(case, "server_client_mode") and role_of(ctx.host) != SERVER:
            return None  # tests without a partner are for servers only
        addresses = {h.name: ctx.tags.get(f"host:{h.name}", "") for h in ctx.suite.hosts}
        return PythonTask(
            classes=tuple(classes(case)),
            modules=dict(case.options.get("modules", {})),
            config=host_config(ctx.suite, case, ctx.host, addresses),
            test_mode=setting(case, "test_mode"),
            test_start_delay=float(setting(case, "test_start_delay")),
            give_results=gives_results(case, ctx.host),
            python=str(case.options.get("python") or ""),
        )

    def judge_run(self, ctx: StageContext, outcome: Outcome) -> tuple[Status, str | None]:
        data = outcome.data if isinstance(outcome.data, dict) else {}
        if data.get("error"):
            return Status.FAILED, str(data["error"])
        status, reason = judge_exit(outcome, ctx)
        if status is not Status.PASSED:
            return status, reason
        if ctx.case is not None and not gives_results(ctx.case, ctx.host):
            return Status.PASSED, None  # a server that keeps its results to itself
        empty = [
            name for name, value in data.get("final_results", {}).items() if value in EMPTY_RESULTS
        ]
        if empty or "final_results" not in data:
            return Status.ERROR, f"empty final_results from {', '.join(empty) or 'the test'}"
        return Status.PASSED, None


PYTHON = PythonTests()
