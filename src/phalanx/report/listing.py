"""`phalanx run PATH --list`: the cases a run would take, for a person (one
line each) or, with `--json`, for a script (a JSON array of objects)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from phalanx.model import Case


def case_row(case: Case) -> dict[str, Any]:
    return {
        "name": case.name,
        "kind": case.kind,
        "tags": list(case.tags),
        "roles": list(case.roles),
        "description": case.description,
    }


def write_json(rows: Sequence[dict[str, Any]], out: TextIO, path: Path | None = None) -> None:
    """To `out`, or to the file `path` (`--list --json FILE`); `-` is `out`."""
    text = json.dumps(list(rows), indent=2) + "\n"
    if path is None or str(path) == "-":
        out.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def write_cases(cases: Sequence[Case], out: TextIO) -> None:
    """`name  [kind]  tags: a, b  — description`, aligned on the names."""
    width = max((len(c.name) for c in cases), default=0)
    for case in cases:
        line = f"{case.name:{width}}  [{case.kind}]"
        if case.tags:
            line += f"  tags: {', '.join(case.tags)}"
        if case.description:
            line += f"  — {' '.join(case.description.split())}"
        out.write(line + "\n")
    out.write(f"{len(cases)} case{'s' if len(cases) != 1 else ''}\n")
