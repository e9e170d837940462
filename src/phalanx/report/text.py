"""Program output made fit for a report: its tail, without terminal escapes
or characters that XML 1.0 cannot carry."""

from __future__ import annotations

import functools
import re
from pathlib import Path

TAIL_LINES = 50
TAIL_BYTES = 8 * 1024

# CSI (colors, cursor moves), OSC (titles, hyperlinks), and two-byte escapes.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[@-Z\\-_]"
)


@functools.cache
def _not_xml() -> re.Pattern[str]:
    """Everything outside XML 1.0's Char production (lone surrogates included).
    Compiled on first use: ~6 ms, and a run where every test passed has no
    output in its reports to clean."""
    return re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def xml_safe(text: str) -> str:
    """Replace characters XML 1.0 forbids (NUL, a bare ESC, ...) with a
    visible `\\xNN`, so the report parses and the reader still sees them."""
    return _not_xml().sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def clean(text: str) -> str:
    return xml_safe(strip_ansi(text))


def tail(path: Path, lines: int = TAIL_LINES, limit: int = TAIL_BYTES) -> str | None:
    """The last `lines` lines of a file, at most `limit` bytes of it, cleaned;
    None when the file cannot be read. Only the end of the file is read, so a
    huge output costs no more than a small one."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            start = max(0, size - limit)
            f.seek(start)
            data = f.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    kept = text.splitlines()
    if start > 0 and len(kept) > 1:
        kept = kept[1:]  # the first line was cut in the middle
    elif start > 0 and kept:
        kept[0] = "…" + kept[0]  # one long line: its end
    omitted = len(kept) > lines or start > 0
    kept = kept[-lines:]
    body = clean("\n".join(kept))
    return f"[... earlier output omitted ...]\n{body}" if omitted else body
