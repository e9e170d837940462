"""avocado's test variants: the YAML files in `<test>.py.data/` beside a VM
test (avocado-virt's `usb_boot.py.data/usb_boot.yaml`), read as avocado's
yaml_to_mux reads them, each variant a case of its own.

A mapping tagged `!mux` holds alternatives: each of its mapping children is
one variant. Any other mapping holds dimensions: its mapping children
multiply. The keys that are not mappings are parameters, of every variant
under them; the deeper value wins. Several files multiply too. The case
`usb` of `usb_boot.py` becomes `usb[tablet]`, `usb[keyboard]`, … with the
variant's parameters over the suite's and the case's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from phalanx.load.errors import DefinitionError, DefinitionErrors
from phalanx.model import Case

DATA_SUFFIX = ".data"  # avocado's: `boot.py` → `boot.py.data/`


class Mux(dict[str, Any]):
    """A mapping tagged `!mux`."""


class _Loader(yaml.SafeLoader):
    """yaml's safe loader, plus `!mux`."""


def _mux(loader: yaml.SafeLoader, node: yaml.Node) -> Mux:
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(
            None, None, "!mux tags a mapping of variants", node.start_mark
        )
    return Mux({str(k): v for k, v in loader.construct_mapping(node, deep=True).items()})


_Loader.add_constructor("!mux", _mux)


@dataclass(frozen=True)
class Variant:
    name: str  # the chosen keys, joined by "-"; "" when nothing varies
    params: dict[str, Any]


def _joined(*names: str) -> str:
    return "-".join(n for n in names if n)


def variants(node: dict[str, Any]) -> list[Variant]:
    """The variants of one parsed file (or of a node of it). Pure."""
    params = {k: v for k, v in node.items() if not isinstance(v, dict)}
    children = [(str(k), v) for k, v in node.items() if isinstance(v, dict)]
    if isinstance(node, Mux) and children:
        return [
            Variant(_joined(key, v.name), {**params, **v.params})
            for key, child in children
            for v in variants(child)
        ]
    found = [Variant("", params)]
    for _key, child in children:
        found = [
            Variant(_joined(a.name, b.name), {**a.params, **b.params})
            for a, b in itertools.product(found, variants(child))
        ]
    return found


def read_variants(files: list[Path]) -> list[Variant]:
    """Every file's variants, multiplied; DefinitionErrors name file and line."""
    found = [Variant("", {})]
    for file in files:
        try:
            data = yaml.load(file.read_text(encoding="utf-8"), Loader=_Loader)
        except (OSError, UnicodeDecodeError) as exc:
            raise DefinitionErrors(
                [DefinitionError(file, None, None, f"cannot read: {exc}")]
            ) from None
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
            what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
            raise DefinitionErrors(
                [DefinitionError(file, line, None, f"avocado variants file: {what}")]
            ) from None
        if data is None:
            continue
        if not isinstance(data, dict):
            raise DefinitionErrors(
                [DefinitionError(file, 1, None, "an avocado variants file is a mapping")]
            )
        found = [
            Variant(_joined(a.name, b.name), {**a.params, **b.params})
            for a, b in itertools.product(found, variants(data))
        ]
    return found


def data_files(test: Path) -> list[Path]:
    folder = test.with_name(test.name + DATA_SUFFIX)
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def _test_file(case: Case, search: tuple[Path, ...]) -> Path | None:
    given = case.options.get("test")
    if not isinstance(given, str):
        return None
    return next((base / given for base in search if (base / given).is_file()), None)


def expand(case: Case, search: tuple[Path, ...]) -> Iterator[Case]:
    """A `vm` case as one case per variant of its test's data files (the
    case itself when it has none)."""
    test = _test_file(case, search) if case.kind == "vm" else None
    files = data_files(test) if test is not None else []
    found = read_variants(files) if files else []
    if len(found) < 2 and not (found and found[0].params):
        yield case
        return
    for variant in found:
        name = f"{case.name}[{variant.name}]" if variant.name else case.name
        yield replace(case, name=name, params={**case.params, **variant.params})
