"""YAML with line numbers, so that a problem names the line of its key.

PyYAML's safe loader builds plain data; the node tree it composes first
still knows where every key sits. We keep both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phalanx.load.errors import DefinitionError, DefinitionErrors

KeyPath = tuple[str | int, ...]

# A definition file is a few kilobytes; a test tree's biggest is a few hundred.
# Anything past this is a mistake or an attack, and reading it costs memory
# and seconds before any other check can say so.
MAX_FILE_BYTES = 2 * 1024 * 1024
# Values a document may hold once its aliases are followed. An alias is cheap
# to write and free to parse; what costs is every reader after us walking the
# repeats (nine aliases of nine of nine ... is a "billion laughs").
MAX_EXPANDED_NODES = 100_000
READ_PIECE = 64 * 1024


@dataclass(frozen=True)
class Source:
    """A file's data and the line of each key path in it (1-based)."""

    file: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    # Keys given twice, when the reader allowed them (the last one counts, as
    # in PyYAML): for `validate --strict` to warn about.
    duplicates: tuple[DefinitionError, ...] = ()

    def line(self, *path: str | int) -> int | None:
        """The line of `path`, or of its nearest known parent."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, message: str, *path: str | int) -> DefinitionError:
        key = ".".join(str(p) for p in path) if path else None
        return DefinitionError(self.file, self.line(*path), key, message)


def parse(text: str, file: Path, *, allow_duplicates: bool = False) -> Source:
    """Parse YAML text; a syntax error or a key given twice raises DefinitionErrors.

    `allow_duplicates` is for files written for other tools (Asterisk's
    test-config.yaml), which PyYAML reads with the last value winning: there
    a key given twice is kept in `duplicates` instead."""
    # libyaml when present: ten times faster, and a test tree has a file per test.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        # Without a `*` the text has no alias, and no bomb to look for: most
        # files, and a tree reads one per test.
        if node is not None and "*" in text:
            _refuse_alias_bombs(node, file)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise DefinitionErrors(
            [DefinitionError(file, line, None, f"YAML syntax error: {problem}")]
        ) from None
    except yaml.YAMLError as exc:
        raise DefinitionErrors([DefinitionError(file, None, None, f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {}
    twice: list[DefinitionError] = []
    if node is not None:
        lines[()] = node.start_mark.line + 1
        _walk(node, (), lines, twice, file)
    if twice and not allow_duplicates:
        raise DefinitionErrors(twice)
    return Source(file, data, lines, tuple(twice))


def read(file: Path, *, allow_duplicates: bool = False) -> Source:
    try:
        # One byte past the limit tells "too big" without reading the rest.
        raw = _read_capped(file, MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            line = raw.count(b"\n", 0, MAX_FILE_BYTES) + 1
            message = (
                f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB "
                f"(the limit for a definition file is reached on this line)"
            )
            raise DefinitionErrors([DefinitionError(file, line, None, message)])
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionErrors([DefinitionError(file, None, None, f"cannot read: {exc}")]) from None
    return parse(text, file, allow_duplicates=allow_duplicates)


def _read_capped(file: Path, limit: int) -> bytes:
    """Up to `limit` bytes of `file`, read a piece at a time: one read of
    the limit would allocate (and map) two mebibytes for every small file,
    and a tree reads a file per test."""
    chunks = []
    with open(file, "rb", buffering=0) as stream:
        while limit > 0:
            chunk = stream.read(min(limit, READ_PIECE))
            if not chunk:
                break
            chunks.append(chunk)
            limit -= len(chunk)
    return b"".join(chunks)


def _refuse_alias_bombs(root: yaml.Node, file: Path) -> None:
    """Raise if following the aliases under `root` gives too many values.

    Aliases make the node tree a graph that shares nodes; its size with the
    repeats counted is computed once per node, so this check itself is linear
    in the file. The error names the innermost key whose value is too big,
    which is where the repeats are written."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in active:  # a recursive alias: no finite expansion
            raise _TooBig(node, None)
        active.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node)
                try:
                    total += size(value_node)
                except _TooBig as exc:
                    raise exc.at(key_node) from None
                if total > MAX_EXPANDED_NODES:
                    raise _TooBig(value_node, key_node)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
                if total > MAX_EXPANDED_NODES:
                    raise _TooBig(node, None)
        active.discard(id(node))
        sizes[id(node)] = total
        return total

    try:
        size(root)
    except _TooBig as exc:
        key = exc.key
        where = key if key is not None else exc.node
        message = (
            f"aliases expand to more than {MAX_EXPANDED_NODES:,} values "
            "(an alias bomb, or a recursive alias); write the values out"
        )
        key_text = str(key.value) if isinstance(key, yaml.ScalarNode) else None
        raise DefinitionErrors(
            [DefinitionError(file, where.start_mark.line + 1, key_text, message)]
        ) from None


class _TooBig(Exception):
    def __init__(self, node: yaml.Node, key: yaml.Node | None) -> None:
        self.node, self.key = node, key

    def at(self, key: yaml.Node) -> _TooBig:
        # The innermost key wins: an outer mapping only fills in a missing one.
        return self if self.key is not None else _TooBig(self.node, key)


def _walk(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    twice: list[DefinitionError],
    file: Path,
) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key_path = (*path, str(key_node.value))
            line = key_node.start_mark.line + 1
            if key_path in lines and key_node.value != "<<":
                dotted = ".".join(str(p) for p in key_path)
                twice.append(
                    DefinitionError(
                        file, line, dotted, f"given twice (first on line {lines[key_path]})"
                    )
                )
            lines[key_path] = line
            _walk(value_node, key_path, lines, twice, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), lines, twice, file)
