"""Where a stage script comes from: `file://relative`, `file:///absolute`,
`http(s)://...`, or inline text."""

from __future__ import annotations

from pathlib import Path

from phalanx.model import Script

URL_TIMEOUT = 10.0


class ScriptError(ValueError):
    """Why a script reference could not be turned into text."""


def resolve(value: object, base: Path, repo: Path | None = None) -> Script:
    """The script `value` names, relative paths taken from `base`. A relative
    `file://` path must stay inside `repo` (the definitions repository), so a
    suite cannot reach a file elsewhere on the machine by accident or by
    `../`; `file:///abs` is how to mean a file outside it."""
    if not isinstance(value, str):
        raise ScriptError(
            f"must be a script (text or a file:// or http(s):// URL), not {_kind(value)}"
        )
    if value.startswith("file://"):
        return _from_file(value, base, repo)
    if value.startswith(("http://", "https://")):
        return _from_url(value)
    if not value.strip():
        raise ScriptError("is empty; give script text or a file:// or http(s):// URL")
    single = value.strip()
    if "\n" not in single and " " not in single and (base / single).is_file():
        # XrdTest would have run the name itself as a one-word script.
        raise ScriptError(f"{single!r} is a file next to the definition; write file://{single}")
    return Script(text=value, origin="inline")


def from_path(path: Path) -> Script:
    """A script read from a known file (the convention names in a case folder)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"cannot read {path}: {exc}") from None
    if not text.strip():
        raise ScriptError(f"{path} is empty")
    return Script(text=text, origin=str(path))


def _from_file(url: str, base: Path, repo: Path | None) -> Script:
    rest = url[len("file://") :]
    if rest.startswith("/"):
        path = Path(rest)
    else:
        path = base / rest
        inside = (repo or base).resolve()
        if not path.resolve().is_relative_to(inside):
            raise ScriptError(
                f"{url} leads outside the definitions repository {inside} (to {path.resolve()}); "
                f"write file://{path.resolve()} if that file is really meant"
            )
    if not path.is_file():
        raise ScriptError(f"{url}: no such file {path}")
    return from_path(path)


def _from_url(url: str) -> Script:
    import httpx  # only definitions that fetch scripts pay for the import

    try:
        reply = httpx.get(url, timeout=URL_TIMEOUT, follow_redirects=True)
        reply.raise_for_status()
    except httpx.HTTPStatusError as exc:
        raise ScriptError(f"{url}: HTTP {exc.response.status_code}") from None
    except httpx.HTTPError as exc:
        raise ScriptError(f"{url} is unreachable: {exc or type(exc).__name__}") from None
    if not reply.text.strip():
        raise ScriptError(f"{url} returned an empty script")
    return Script(text=reply.text, origin=url)


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__
