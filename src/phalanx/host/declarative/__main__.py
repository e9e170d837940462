"""`python -m phalanx.host.declarative TEST_DIR`: run one declarative test.

Exit 0: passed; 1: failed (the reasons are printed); 2: its config is wrong.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from phalanx.host.declarative.modules import resolve
from phalanx.host.declarative.testobject import ProcessTest, end_group
from phalanx.kinds.declarative.eventaction import ConfigError
from phalanx.load.errors import DefinitionErrors
from phalanx.load.yamlsrc import Source, read

TEST_CONFIG = "test-config.yaml"


class Broken(Exception):
    pass


def _section(source: Source, entry: Any, *path: str | int) -> Any:
    if not isinstance(entry, dict) or "typename" not in entry:
        raise Broken(str(source.error("needs `typename:` (and `config-section:`)", *path)))
    name = entry.get("config-section")
    if name is None:
        return None
    if name not in source.data:
        raise Broken(
            str(source.error(f"no section {name!r} in this file", *path, "config-section"))
        )
    return source.data[name]


def build(test_dir: Path) -> tuple[ProcessTest, list[Any]]:
    """The test object and its modules, as `test-modules:` says. Raises Broken."""
    try:
        source = read(test_dir / TEST_CONFIG)
    except DefinitionErrors as exc:
        raise Broken(str(exc)) from None
    spec = source.data.get("test-modules") if isinstance(source.data, dict) else None
    if not isinstance(spec, dict):
        raise Broken(str(source.error("`test-modules:` must be a mapping", "test-modules")))
    search = [test_dir, Path.cwd()]
    entry = spec.get("test-object") or {"typename": "ProcessTest"}
    try:
        test_class = (
            resolve(str(entry.get("typename")), search) if isinstance(entry, dict) else None
        )
        if test_class is None or not (
            isinstance(test_class, type) and issubclass(test_class, ProcessTest)
        ):
            raise Broken(
                str(
                    source.error(
                        "must name ProcessTest or a subclass", "test-modules", "test-object"
                    )
                )
            )
        test = test_class(_section(source, entry, "test-modules", "test-object"), test_dir)
        modules = []
        for index, item in enumerate(spec.get("modules") or []):
            path = ("test-modules", "modules", index)
            config = _section(source, item, *path)
            module_class = resolve(str(item["typename"]), search)
            try:
                modules.append(module_class(config, test))
            except ConfigError as exc:
                section = str(item.get("config-section"))
                raise Broken(str(source.error(str(exc), section, *exc.path))) from None
    except (LookupError, ValueError, TypeError) as exc:
        raise Broken(f"{source.file}: {exc}") from None
    return test, modules


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m phalanx.host.declarative TEST_DIR\n")
        return 2
    test_dir = Path(argv[0]).resolve()
    try:
        test, _modules = build(test_dir)
    except Broken as exc:
        print(f"error: {exc}", flush=True)
        return 2
    try:
        passed, reasons = asyncio.run(test.run())
    finally:
        end_group()
    if passed:
        print("PASSED", flush=True)
        return 0
    print("FAILED: " + "; ".join(reasons or ["not marked passed"]), flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
