"""What a host's test reported (`HostResult.data`), in words a person reads:
the console's "host results" and `phalanx results convert`. Pure.

A walks case reports its counts, its failures and its trace; a Python test
its `final_results`; anything else is shown as `key: value` pairs, never
as raw JSON.
"""

from __future__ import annotations

import json
from typing import Any


def is_walks(data: Any) -> bool:
    return isinstance(data, dict) and "walk_count" in data and "pruned_count" in data


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def walks_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A walks run's counts, with the names a person reads; the failures
    and the shrunk walks stay in results.json."""
    return {
        "walks": data.get("walk_count"),
        "pruned": data.get("pruned_count"),
        "failed": data.get("error_count"),
        "cancelled": data.get("cancel_count"),
        "strategy": data.get("strategy"),
        "seed": data.get("seed"),
        "seconds": data.get("elapsed"),
        "trace": data.get("trace"),
    }


def walks_text(data: dict[str, Any]) -> str:
    """`36 walks ran, 36 pruned, none failed (product, 0.09s)`, a line per
    failed walk, and the trace."""
    ran = int(data.get("walk_count") or 0)
    parts = [f"{_plural(ran, 'walk')} ran"]
    if data.get("pruned_count"):
        parts.append(f"{data['pruned_count']} pruned")
    failed = int(data.get("error_count") or 0)
    parts.append(f"{failed} failed" if failed else "none failed")
    if data.get("cancel_count"):
        parts.append(f"{data['cancel_count']} cancelled")
    how = str(data.get("strategy") or "product")
    if data.get("seed") is not None:
        how += f" seed {data['seed']}"
    if isinstance(data.get("elapsed"), int | float):
        how += f", {data['elapsed']:.2f}s"
    lines = [", ".join(parts) + f" ({how})"]
    for failure in data.get("failures") or []:
        if isinstance(failure, dict):
            # its text names the walk: "walk 17 failed at Boom(1): ValueError: …"
            lines.append(str(failure.get("text") or f"walk {failure.get('walk_id')} failed"))
    hidden = failed - len(data.get("failures") or [])
    if hidden > 0:
        lines.append(f"… and {_plural(hidden, 'more failed walk')} (in the trace)")
    if data.get("trace"):
        lines.append(f"trace: {data['trace']}")
    return "\n".join(lines)


def value_text(value: Any) -> str:
    """A scalar as it reads; a mapping as `key: value, …`; a list joined by
    commas; deeper levels compact."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_inner(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_inner(v) for v in value)
    return str(value)


def _inner(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, separators=(", ", ": "), default=str)
    return value_text(value)


def data_text(data: Any) -> str:
    """A host's data for the console: walks in words, a Python test's
    `final_results` one test a line, the rest as `value_text`."""
    if is_walks(data):
        return walks_text(data)
    if isinstance(data, dict) and isinstance(data.get("final_results"), dict):
        tests = data["final_results"]
        return "\n".join(f"{name}: {value_text(v)}" for name, v in tests.items())
    return value_text(data)
