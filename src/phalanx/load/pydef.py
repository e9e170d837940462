"""Executing a Python definition file (`getTestSuite()`, `getCluster()`).

Definition files are code the repo's owners wrote, run the way XrdTest ran
them; an exception in one becomes a definition error at the file's own line.
"""

from __future__ import annotations

import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx.load import xrdtest
from phalanx.load.errors import DefinitionError, DefinitionErrors


@dataclass(frozen=True)
class Called:
    value: Any  # what the function returned
    lines: dict[str, int]  # where each `x.attr = ...` is first assigned


def call(file: Path, function: str) -> Called:
    """Execute `file` with the XrdTest names importable, call `function()`;
    its value, and the line of each attribute the file assigns, so that a
    problem with an attribute names its line."""
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionErrors([DefinitionError(file, None, None, f"cannot read: {exc}")]) from None
    namespace: dict[str, Any] = {
        "__name__": f"phalanx_definition_{file.stem}",
        "__file__": str(file),
    }
    folder = str(file.parent)
    sys.path.insert(0, folder)  # a definition may import helpers that sit beside it
    try:
        with xrdtest.provided():
            code = compile(source, str(file), "exec")
            exec(code, namespace)
            entry = namespace.get(function)
            if not callable(entry):
                raise DefinitionErrors(
                    [DefinitionError(file, None, function, f"the file defines no {function}()")]
                )
            return Called(entry(), attribute_lines(source))
    except DefinitionErrors:
        raise
    except SyntaxError as exc:
        raise DefinitionErrors(
            [DefinitionError(file, exc.lineno, None, f"Python syntax error: {exc.msg}")]
        ) from None
    except Exception as exc:
        raise DefinitionErrors(
            [DefinitionError(file, _line_in(file, exc), function, f"raised {_describe(exc)}")]
        ) from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _line_in(file: Path, exc: BaseException) -> int | None:
    """The deepest line of `file` in the exception's traceback."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(file):
            line = frame.lineno
    return line


def attribute_lines(source: str) -> dict[str, int]:
    lines: dict[str, int] = {}
    for number, line in enumerate(source.splitlines(), 1):
        for match in re.finditer(r"\.(\w+)\s*=(?!=)", line):
            lines.setdefault(match.group(1), number)
    return lines
