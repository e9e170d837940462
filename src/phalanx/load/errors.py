"""Problems found in definitions, each pointing at a file, a line and a key."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DefinitionError:
    file: Path | None
    line: int | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = str(self.file) if self.file is not None else "<definitions>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class DefinitionErrors(Exception):
    """One or more problems; nothing built from these definitions may run."""

    def __init__(self, errors: Iterable[DefinitionError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class Problems:
    """Collects the problems of one file, so a loader reports them all at once."""

    def __init__(self, file: Path | None) -> None:
        self.file = file
        self.errors: list[DefinitionError] = []

    def add(self, message: str, key: str | None = None, line: int | None = None) -> None:
        self.errors.append(DefinitionError(self.file, line, key, message))

    def extend(self, errors: Iterable[DefinitionError]) -> None:
        self.errors.extend(errors)

    def raise_if_any(self) -> None:
        if self.errors:
            raise DefinitionErrors(self.errors)

    def __bool__(self) -> bool:
        return bool(self.errors)
