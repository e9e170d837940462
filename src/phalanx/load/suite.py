"""Suite definitions: `test-suites/<suite>/suite.yaml`, or `test_suite.py`
(`<suite>.py` in older repos) with `getTestSuite()`, into a `Suite`.

Both forms become one mapping of suite keys, checked by the same code, so a
suite means the same thing whichever way it was written.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from phalanx.kinds import registry as kinds
from phalanx.kinds.base import CaseSpec, OptionError
from phalanx.load import faults, fields, modules, pydef, scripts, variants, yamlsrc
from phalanx.load.errors import DefinitionError, DefinitionErrors, Problems
from phalanx.load.fields import FieldError
from phalanx.load.schedule import ScheduleError, parse_schedule
from phalanx.load.xrdtest import TestSuite
from phalanx.model import AlertPolicy, Case, Cluster, Script, Suite
from phalanx.plugins import PluginError, UnknownPlugin

SUITE_KEYS = frozenset(
    {
        "name",
        "description",
        "descName",
        "cluster",
        "clusters",
        "machines",
        "tests",
        "initialize",
        "finalize",
        "schedule",
        "logs",
        "alert_emails",
        "alert_success",
        "alert_failure",
        "webhooks",
        "timeout",
        "tags",
        "params",
        "shell",
    }
)
# How XrdTest's slave ran every script: `Popen(script, shell=True)`, no -e.
XRDTEST_SHELL = ("/bin/sh",)
CASE_KEYS = frozenset(
    {
        "name",
        "kind",
        "description",
        "timeout",
        "roles",
        "params",
        "tags",
        "initialize",
        "run",
        "finalize",
        "check",
        "nemesis",
    }
)
# A case folder's stage scripts, by convention (XrdTest names first).
STAGE_FILES = {
    "initialize": ("init.sh", "initialize.sh"),
    "run": ("run.sh",),
    "finalize": ("finalize.sh",),
}
SUITE_FILES = {"initialize": "suite_init.sh", "finalize": "suite_finalize.sh"}
DEFINITION_FILES = ("suite.yaml", "suite.yml", "test_suite.py")


def definition_file(folder: Path) -> Path | None:
    """The file that defines the suite in `folder`, if any."""
    for name in (*DEFINITION_FILES, f"{folder.name}.py"):
        if (folder / name).is_file():
            return folder / name
    return None


@dataclass(frozen=True)
class Where:
    """Points a problem at its file, line and key."""

    file: Path
    line: Callable[..., int | None]
    label: str = ""  # what key names are under, e.g. `tests.greet`
    elsewhere: Mapping[str, Where] = field(default_factory=dict)  # keys given in another file

    def error(self, message: str, *path: str | int) -> DefinitionError:
        if path and str(path[0]) in self.elsewhere:
            return self.elsewhere[str(path[0])].error(message, *path)
        parts = [self.label] if self.label else []
        parts += [str(p) for p in path]
        return DefinitionError(self.file, self.line(*path), ".".join(parts) or None, message)


def load_suite(
    folder: Path,
    clusters: Mapping[str, Cluster],
    repo: Path | None = None,
    broken: Mapping[str, list[DefinitionError]] | None = None,
) -> Suite:
    """The suite defined in `folder`; DefinitionErrors with every problem otherwise.

    `broken` holds the problems of cluster files that did not load, by file
    name: a suite naming one of them gets those problems instead of
    "unknown cluster"."""
    file = definition_file(folder)
    if file is None:
        names = ", ".join((*DEFINITION_FILES, f"{folder.name}.py"))
        raise DefinitionErrors(
            [DefinitionError(folder, None, None, f"no suite definition here (looked for {names})")]
        )
    if file.suffix == ".py":
        raw, where = _from_python(file)
    else:
        src = yamlsrc.read(file)
        if not isinstance(src.data, dict):
            raise DefinitionErrors([src.error("a suite file must be a mapping of suite keys")])
        raw, where = dict(src.data), Where(file, src.line)
    return build(raw, where, folder, clusters, repo or folder.parent.parent, broken or {})


def _from_python(file: Path) -> tuple[dict[str, Any], Where]:
    called = pydef.call(file, "getTestSuite")
    made, lines = called.value, called.lines
    if not isinstance(made, TestSuite):
        raise DefinitionErrors(
            [
                DefinitionError(
                    file,
                    None,
                    "getTestSuite",
                    f"must return a TestSuite, not {type(made).__name__}",
                )
            ]
        )
    # Only what the file set: XrdTest's defaults are the loader's defaults too.
    raw = {k: v for k, v in vars(made).items() if not k.startswith("_") and v not in (None, [], {})}
    return raw, Where(file, lambda *path: lines.get(str(path[0])) if path else None)


def build(
    raw: dict[str, Any],
    where: Where,
    folder: Path,
    clusters: Mapping[str, Cluster],
    repo: Path,
    broken: Mapping[str, list[DefinitionError]],
) -> Suite:
    problems = Problems(where.file)
    values: dict[str, Any] = {"path": folder}

    def check(key: str, parse: Callable[[Any], Any]) -> None:
        if key in raw:
            try:
                values[key] = parse(raw[key])
            except (FieldError, ScheduleError) as exc:
                problems.errors.append(where.error(str(exc), key))

    for key in raw:
        if key not in SUITE_KEYS:
            problems.errors.append(where.error(fields.unknown_key(key, SUITE_KEYS), key))

    name = raw.get("name", folder.name)
    try:
        fields.segment(name)
    except FieldError as exc:
        problems.errors.append(where.error(str(exc), "name"))
        name = folder.name
    values["name"] = name
    description = raw.get("description", raw.get("descName"))
    if description is not None:
        values["description"] = str(description)

    check("machines", fields.names)
    check("logs", fields.names)
    check("alert_emails", _emails)
    check("alert_success", _policy)
    check("alert_failure", _policy)
    check("webhooks", _webhooks)
    check("timeout", fields.seconds)
    check("tags", fields.string_map)
    check("params", fields.mapping)
    check("schedule", parse_schedule)
    check("shell", _shell)
    if where.file.suffix == ".py":
        values["xrdtest"] = True
        values.setdefault("shell", XRDTEST_SHELL)

    cluster = _cluster(raw, where, clusters, broken, problems)
    if cluster is not None:
        values["cluster"] = cluster
        for index, machine in enumerate(values.get("machines", ())):
            if cluster.host(machine) is None:
                known = ", ".join(h.name for h in cluster.hosts)
                problems.errors.append(
                    where.error(
                        f"{machine!r} is not a host of cluster {cluster.name!r} (hosts: {known})",
                        "machines",
                        index,
                    )
                )

    for stage, default in SUITE_FILES.items():
        script = _suite_script(raw, stage, default, folder, repo, where, problems)
        if script is not None:
            values[stage] = script

    if "tests" not in raw:
        problems.errors.append(
            where.error("missing: `tests` lists the cases to run, in order", "tests")
        )
    else:
        values["cases"] = _cases(raw["tests"], where, folder, repo, problems)

    problems.raise_if_any()
    return Suite(**values)


def _cluster(
    raw: dict[str, Any],
    where: Where,
    clusters: Mapping[str, Cluster],
    broken: Mapping[str, list[DefinitionError]],
    problems: Problems,
) -> Cluster | None:
    key = "cluster" if "cluster" in raw else "clusters"
    value = raw.get(key)
    if value is None:
        problems.errors.append(
            where.error("missing: name the cluster the suite runs on", "cluster")
        )
        return None
    if isinstance(value, list | tuple):
        if len(value) != 1:
            problems.errors.append(
                where.error(f"a suite runs on one cluster; {len(value)} are named", key)
            )
            return None
        value = value[0]
    if not isinstance(value, str):
        problems.errors.append(where.error("must be the name of a cluster", key))
        return None
    cluster = clusters.get(value)
    if cluster is None and value in broken:
        count = len(broken[value])
        found = f"{count} problem{'s' if count != 1 else ''}"
        file = broken[value][0].file if broken[value] else None
        message = f"cluster {value!r} does not load ({found} in {file})"
        problems.errors.append(where.error(message, key))
        problems.extend(broken[value])
    elif cluster is None:
        known = ", ".join(sorted(clusters)) or "none"
        problems.errors.append(where.error(f"unknown cluster {value!r} (known: {known})", key))
    return cluster


def _suite_script(
    raw: dict[str, Any],
    stage: str,
    default: str,
    folder: Path,
    repo: Path,
    where: Where,
    problems: Problems,
) -> Script | None:
    try:
        if stage in raw:
            return scripts.resolve(raw[stage], folder, repo)
        if (folder / default).is_file():
            return scripts.from_path(folder / default)
    except scripts.ScriptError as exc:
        problems.errors.append(where.error(str(exc), stage))
    return None


def _cases(
    value: Any, where: Where, folder: Path, repo: Path, problems: Problems
) -> tuple[Case, ...]:
    if not isinstance(value, list) or not value:
        problems.errors.append(where.error("must be a non-empty list of case names", "tests"))
        return ()
    cases: list[Case] = []
    seen: set[str] = set()
    for index, entry in enumerate(value):
        spec = _case_spec(entry)
        if spec is None:
            problems.errors.append(
                where.error(
                    "a case is a name, or a mapping with `name` and case keys", "tests", index
                )
            )
            continue
        try:
            fields.segment(spec["name"])
        except FieldError as exc:
            problems.errors.append(where.error(str(exc), "tests", index))
            continue
        case = _case(spec, where, ("tests", index), folder, repo, problems)
        if case is None:
            continue
        try:
            # A VM test's avocado variants (`<test>.py.data/*.yaml`): a case each.
            expanded = list(variants.expand(case, (case.path or folder, folder, repo)))
        except DefinitionErrors as exc:
            problems.extend(exc.errors)
            continue
        for one in expanded:
            if one.name in seen:
                line = where.line("tests", index)
                problems.add(f"case {one.name!r} is listed twice", f"tests.{one.name}", line)
            seen.add(one.name)
            cases.append(one)
    return tuple(cases)


def _case_spec(entry: Any) -> dict[str, Any] | None:
    if isinstance(entry, str) and entry:
        return {"name": entry}
    if isinstance(entry, dict):
        if isinstance(entry.get("name"), str):
            return dict(entry)
        if len(entry) == 1:  # the compact form: `- name: {kind: python, ...}`
            ((name, options),) = entry.items()
            if isinstance(name, str) and isinstance(options, dict | None):
                return {"name": name, **(options or {})}
    return None


def _case(
    spec: dict[str, Any],
    suite_where: Where,
    at: tuple[str | int, ...],
    folder: Path,
    repo: Path,
    problems: Problems,
) -> Case | None:
    name = spec["name"]
    case_dir = folder / "tc" / name
    where = Where(suite_where.file, lambda *path: suite_where.line(*at, *path), f"tests.{name}")
    # A case folder may hold its own case.yaml; the suite's entry wins over it.
    case_file = case_dir / "case.yaml"
    if case_file.is_file():
        try:
            src = yamlsrc.read(case_file)
        except DefinitionErrors as exc:
            problems.extend(exc.errors)
            return None
        if not isinstance(src.data, dict):
            problems.errors.append(src.error("a case file must be a mapping of case keys"))
            return None
        own = {k: v for k, v in src.data.items() if k not in spec}
        if own:
            spec = {**own, **spec}
            case_where = Where(case_file, src.line)
            where = Where(where.file, where.line, where.label, dict.fromkeys(own, case_where))

    kind_name = spec.get("kind", "scripts")
    try:
        kind = kinds.get(str(kind_name))
    except (UnknownPlugin, PluginError) as exc:
        problems.errors.append(where.error(str(exc), "kind"))
        return None

    values: dict[str, Any] = {"name": name, "kind": kind.name, "path": case_dir}
    options: dict[str, Any] = {}
    for key, value in spec.items():
        if key in kind.options:
            options[key] = value
        elif key not in CASE_KEYS:
            what = f"case key for kind {kind.name!r}"
            problems.errors.append(
                where.error(fields.unknown_key(key, CASE_KEYS | kind.options, what), key)
            )
    parsers: dict[str, Callable[[Any], Any]] = {
        "timeout": fields.seconds,
        "roles": fields.names,
        "params": fields.mapping,
        "tags": fields.names,
        "description": fields.text,
        "check": faults.check,
    }
    for key, parse in parsers.items():
        if key in spec:
            try:
                values[key] = parse(spec[key])
            except FieldError as exc:
                problems.errors.append(where.error(str(exc), key))
    if "nemesis" in spec:
        values["nemesis"], wrong = faults.nemesis(spec["nemesis"])
        for message, path in wrong:
            problems.errors.append(where.error(message, "nemesis", *path))

    stages: dict[str, Script] = {}
    for stage, files in STAGE_FILES.items():
        try:
            if stage in spec:
                stages[stage] = scripts.resolve(spec[stage], case_dir, repo)
                continue
            found = next((case_dir / f for f in files if (case_dir / f).is_file()), None)
            if found is not None:
                stages[stage] = scripts.from_path(found)
        except scripts.ScriptError as exc:
            problems.errors.append(where.error(str(exc), stage))
    values["stages"] = stages

    search = (case_dir, folder, repo)
    case_spec = CaseSpec(
        name=name,
        options=options,
        stages=stages,
        folder=case_dir,
        has_folder=case_dir.is_dir(),
        search=search,
        read_module=modules.reader(search),
    )
    try:
        options = kind.prepare(case_spec)
    except OptionError as exc:
        problems.errors.append(where.error(str(exc), *exc.path))
        return None
    values["options"] = options
    return Case(**values)


def _shell(value: Any) -> tuple[str, ...]:
    """`sh`, `bash -e`, `/bin/zsh`: a program that takes `-c SCRIPT NAME`."""
    if not isinstance(value, str):
        raise FieldError(f"must be a shell command like `sh` or `bash -e`, not {value!r}")
    try:
        words = tuple(shlex.split(value))
    except ValueError as exc:
        raise FieldError(f"cannot be read as a command ({exc}): {value!r}") from None
    if not words:
        raise FieldError("must name a shell, e.g. `sh` or `bash -e`")
    return words


def _policy(value: Any) -> AlertPolicy:
    try:
        return AlertPolicy(str(value).upper())
    except ValueError:
        raise FieldError(f"must be SUITE, CASE or NONE, not {value!r}") from None


def _emails(value: Any) -> tuple[str, ...]:
    emails = fields.names(value)
    for email in emails:
        if "@" not in email:
            raise FieldError(f"{email!r} is not an email address")
    return emails


def _webhooks(value: Any) -> tuple[str, ...]:
    urls = fields.names(value)
    for url in urls:
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 - raises on a port that is not one
        except ValueError:
            ok = False
        if not ok:
            raise FieldError(f"{url!r} is not an http(s) URL")
    return urls
