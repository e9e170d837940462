"""One test's `test-config.yaml` (the Asterisk test-suite format).

Only the keys phalanx acts on are checked; real files carry many more
(`minversion`, `issues`, module config sections…) and those are kept out of
the way, not refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phalanx.load import fields
from phalanx.load.errors import DefinitionError
from phalanx.load.yamlsrc import Source

Dependency = tuple[str, str]  # (kind, name): ("app", "sipp"), ("python", "twisted")


@dataclass(frozen=True)
class TestConfig:
    summary: str = ""
    description: str = ""
    skip: str | None = None  # the reason the test is not to be run
    dependencies: tuple[Dependency, ...] = ()
    tags: tuple[str, ...] = ()
    expected_fail: bool = False
    timeout: float | None = None  # seconds for the whole test
    check: str | None = None  # `properties: check:`, a model its history must satisfy
    declarative: bool = False  # has `test-modules:`
    errors: list[DefinitionError] = field(default_factory=list)


def parse(source: Source) -> TestConfig:
    """The parts of `source` phalanx reads; problems in `errors`."""
    data = source.data if source.data is not None else {}
    errors: list[DefinitionError] = []
    if not isinstance(data, dict):
        errors.append(source.error(f"must be a mapping, not {type(data).__name__}"))
        return TestConfig(errors=errors)
    info = _section(source, data, "testinfo", errors)
    props = _section(source, data, "properties", errors)

    def text(section: dict[str, Any], *path: str) -> str:
        value = section.get(path[-1])
        if value is None:
            return ""
        try:
            return fields.text(value)
        except fields.FieldError as exc:
            errors.append(source.error(str(exc), *path))
            return ""

    skip: str | None = None
    if "skip" in info:
        raw = info["skip"]
        # `skip: true` and `skip: 'reason'` both occur; `false` keeps the test.
        if raw is True:
            skip = "skipped by its test-config.yaml"
        elif raw not in (False, None):
            skip = text(info, "testinfo", "skip") or "skipped by its test-config.yaml"

    tags: tuple[str, ...] = ()
    if props.get("tags") is not None:
        try:
            tags = tuple(str(t) for t in fields.names(props["tags"]))
        except fields.FieldError as exc:
            errors.append(source.error(str(exc), "properties", "tags"))

    timeout: float | None = None
    if props.get("timeout") is not None:
        try:
            timeout = fields.seconds(props["timeout"])
        except fields.FieldError as exc:
            errors.append(source.error(str(exc), "properties", "timeout"))

    check: str | None = None
    if props.get("check") is not None:
        from phalanx.load import faults  # only tests that check their history

        try:
            check = faults.check(props["check"])
        except fields.FieldError as exc:
            errors.append(source.error(str(exc), "properties", "check"))

    return TestConfig(
        summary=text(info, "testinfo", "summary").strip(),
        description=text(info, "testinfo", "description").strip(),
        skip=skip,
        dependencies=_dependencies(source, props.get("dependencies"), errors),
        tags=tags,
        expected_fail=_expected_fail(source, props, errors),
        timeout=timeout,
        check=check,
        declarative="test-modules" in data,
        errors=errors + _test_modules(source, data),
    )


BUILT_IN_EVENT_ACTION = {"EventActionModule", "phalanx.EventActionModule"}


def _test_modules(source: Source, data: dict[str, Any]) -> list[DefinitionError]:
    """What can be checked of `test-modules:` without running a test's own
    code: its shape and the sections of the built-in event/action module. A
    `config-section` that is missing or names no section means the whole
    file, as in Asterisk's runner (phalanx's own event/action module excepted). Users' own modules check themselves
    when the test runs."""
    spec = data.get("test-modules")
    if spec is None:
        return []
    from phalanx.kinds.declarative import eventaction  # only trees that use it pay for it

    if not isinstance(spec, dict):
        return [source.error("must be a mapping with `test-object` and `modules`", "test-modules")]
    errors: list[DefinitionError] = []
    entries: list[tuple[tuple[str | int, ...], Any]] = []
    test_object = spec.get("test-object")
    if isinstance(test_object, list):
        # Asterisk's runner takes the first of a list (the others are for
        # other Asterisk versions).
        if test_object:
            entries.append((("test-modules", "test-object", 0), test_object[0]))
    elif test_object is not None:
        entries.append((("test-modules", "test-object"), test_object))
    modules = spec.get("modules") or []
    if not isinstance(modules, list):
        return [source.error("must be a list of modules", "test-modules", "modules")]
    entries += [(("test-modules", "modules", i), m) for i, m in enumerate(modules)]
    for path, entry in entries:
        if not isinstance(entry, dict) or not entry.get("typename"):
            errors.append(source.error("needs `typename:` (and `config-section:`)", *path))
            continue
        section = entry.get("config-section")
        built_in = str(entry["typename"]) in BUILT_IN_EVENT_ACTION
        if section is None:
            continue
        if section not in data:
            # Asterisk's runner hands such a module the whole file; phalanx's
            # own event/action module needs its list.
            if built_in:
                errors.append(
                    source.error(f"no section {section!r} in this file", *path, "config-section")
                )
            continue
        if built_in:
            try:
                eventaction.parse(data[section])
            except eventaction.ConfigError as exc:
                errors.append(source.error(str(exc), str(section), *exc.path))
    return errors


def _section(
    source: Source, data: dict[str, Any], key: str, errors: list[DefinitionError]
) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(source.error(f"must be a mapping, not {type(value).__name__}", key))
        return {}
    return {str(k): v for k, v in value.items()}


def _expected_fail(source: Source, props: dict[str, Any], errors: list[DefinitionError]) -> bool:
    for key in ("expected-result", "expectedResult"):
        if key not in props:
            continue
        value = props[key]
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            errors.append(source.error("must be true or false", "properties", key))
            return False
        return not value
    return False


def _dependencies(
    source: Source, value: Any, errors: list[DefinitionError]
) -> tuple[Dependency, ...]:
    """`- python: 'twisted'` list items (the usual form), or one mapping of
    kind to a name or a list of names. A kind given a mapping, as Asterisk's
    `- sipp: {version: 'v3.0', feature: 'PCAP'}` and `- openssl: {version:
    …}`, is kept as `key=value` words (`version=v3.0 feature=PCAP`); given
    nothing, as `any`."""
    if value is None:
        return ()
    found: list[Dependency] = []

    def add(kind: Any, names: Any, *path: str | int) -> None:
        if isinstance(names, dict):
            words = " ".join(f"{k}={v}" for k, v in names.items() if v is not None)
            found.append((str(kind), words or "any"))
            return
        if names is None:
            found.append((str(kind), "any"))
            return
        items = names if isinstance(names, list) else [names]
        for item in items:
            if isinstance(item, dict | list) or item is None or str(item).strip() == "":
                errors.append(source.error(f"{kind} needs a name", *path))
                continue
            found.append((str(kind), str(item).strip()))

    if isinstance(value, dict):
        for kind, names in value.items():
            add(kind, names, "properties", "dependencies", str(kind))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            path = ("properties", "dependencies", index)
            if not isinstance(item, dict) or not item:
                errors.append(source.error("must be like `- app: NAME`", *path))
                continue
            for kind, names in item.items():
                add(kind, names, *path)
    else:
        errors.append(
            source.error("must be a list like `- app: NAME`", "properties", "dependencies")
        )
    return tuple(found)


@dataclass(frozen=True)
class GlobalConfig:
    """The test suite's own `test-config.yaml` (beside `tests/`, or given by
    `--testsuite-config`), read as runtests.py reads it:
    `global-settings.test-configuration` names the section in force; that
    section's `exclude-tests` lists names, and a test whose name contains one
    is not run. Condition definitions (pre/post checks of Asterisk's own
    library) are read and named, not evaluated."""

    file: Path | None = None
    configuration: str | None = None  # the section in force: config-standard
    excluded: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()  # names in condition-definitions
    test_conditions: tuple[str, ...] = ()  # the section's properties.testconditions
    remote: bool = False  # the section lists asterisk-instances with a host
    warnings: tuple[str, ...] = ()

    def excluded_by(self, test_name: str) -> str | None:
        """The exclude-tests entry that rules `test_name` out, if one does
        (a substring, as runtests.py compares)."""
        return next((e for e in self.excluded if e in test_name), None)


def parse_global(source: Source) -> GlobalConfig:
    data = source.data if isinstance(source.data, dict) else {}
    warnings: list[str] = []
    settings = data.get("global-settings")
    if not isinstance(settings, dict):
        return GlobalConfig(file=source.file)
    definitions = settings.get("condition-definitions") or []
    conditions = tuple(
        str(d["name"]) for d in definitions if isinstance(d, dict) and d.get("name") is not None
    )
    name = settings.get("test-configuration")
    section: Any = None
    if name is not None:
        if name in data:
            section = data[name] or {}
        else:
            warnings.append(f"test configuration {name!r} not found in {source.file.name}")
    excluded: tuple[str, ...] = ()
    test_conditions: tuple[str, ...] = ()
    remote = False
    if isinstance(section, dict):
        raw = section.get("exclude-tests") or []
        excluded = tuple(str(e) for e in (raw if isinstance(raw, list) else [raw]) if e)
        props = section.get("properties")
        listed = props.get("testconditions") if isinstance(props, dict) else None
        if isinstance(listed, list):
            test_conditions = tuple(
                str(c["name"]) for c in listed if isinstance(c, dict) and "name" in c
            )
        instances = section.get("asterisk-instances")
        if isinstance(instances, list):
            remote = any(isinstance(i, dict) and i.get("host") for i in instances)
    return GlobalConfig(
        file=source.file,
        configuration=str(name) if name is not None else None,
        excluded=excluded,
        conditions=conditions,
        test_conditions=test_conditions,
        remote=remote,
        warnings=tuple(warnings),
    )
