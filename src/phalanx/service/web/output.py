"""The output viewer's reading: one page of a (possibly huge) output file by
byte range, cut at line boundaries, its lines classified for highlighting,
and a search that scans forward from a position in bounded chunks.

Only one page is ever read and sent, so the browser never holds more than
a page. A page inside the file is numbered by counting the newlines before
it, a megabyte at a time (tens of milliseconds for a 50 MB log): "line
123456" must mean the same after End or Find as from the start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PAGE = 64 * 1024
SCAN_CHUNK = 1024 * 1024
MAX_QUERY = 200

_ERROR = re.compile(
    rb"\b(error|errors|fail|failed|failure|fatal|panic|traceback|exception)\b", re.I
)
_WARNING = re.compile(rb"\b(warn|warning|warnings|deprecated)\b", re.I)
_SUCCESS = re.compile(rb"\b(ok|pass|passed|success|succeeded|done)\b", re.I)


@dataclass(frozen=True)
class Line:
    number: int  # from 1 at the file's start
    text: str
    kind: str  # "error", "warning", "success" or ""
    hit: bool = False


@dataclass(frozen=True)
class OutputPage:
    start: int  # byte offset of the page's first line
    end: int  # byte offset after its last line
    size: int  # the file's size
    lines: tuple[Line, ...]
    first_end: int  # byte offset after the first line (where "find next" goes on)

    @property
    def at_start(self) -> bool:
        return self.start == 0

    @property
    def at_end(self) -> bool:
        return self.end >= self.size

    @property
    def previous(self) -> int:
        return max(0, self.start - PAGE)

    @property
    def last(self) -> int:
        return max(0, self.size - PAGE)


def kind_of(line: bytes) -> str:
    if _ERROR.search(line):
        return "error"
    if _WARNING.search(line):
        return "warning"
    if _SUCCESS.search(line):
        return "success"
    return ""


def read_page(
    path: Path, offset: int, *, page: int = PAGE, query: str = "", exact: bool = False
) -> OutputPage:
    """The lines of `path` around bytes [offset, offset + page), ending with
    the last whole line (unless one line is longer than the page). It
    starts at `offset` itself when `exact` (a "next" link: where the last
    page ended), else at the first line that begins at or after it."""
    needle = query.encode()[:MAX_QUERY].lower()
    with path.open("rb") as f:
        size = f.seek(0, 2)
        offset = max(0, min(offset, size))
        # One byte before: whether `offset` is a line's start already.
        start = max(0, offset - 1)
        f.seek(start)
        data = f.read(page + (offset - start))
        before = _newlines(f, start)
    read_from, read = start, data
    if exact or (offset > 0 and data[:1] == b"\n"):
        data, start = data[offset - start :], offset
    elif offset > 0:
        # Begin at a line's start: skip the partial line, unless that is all there is.
        newline = data.find(b"\n")
        if 0 <= newline < len(data) - 1:
            data, start = data[newline + 1 :], start + newline + 1
    skipped_newlines = read[: start - read_from].count(b"\n")
    end = start + len(data)
    if end < size:
        cut = data.rfind(b"\n")
        if cut >= 0:
            data, end = data[: cut + 1], start + cut + 1
    number = 1 + before + skipped_newlines  # the line that begins at `start`
    lines = []
    for raw in data.splitlines():
        lines.append(
            Line(
                number=number,
                text=raw.decode("utf-8", errors="replace"),
                kind=kind_of(raw),
                hit=bool(needle) and needle in raw.lower(),
            )
        )
        number += 1
    newline = data.find(b"\n")
    first_end = start + newline + 1 if newline >= 0 else end
    return OutputPage(start, end, size, tuple(lines), first_end)


def _newlines(f: BinaryIO, end: int) -> int:
    """How many newlines the file holds before byte `end`."""
    f.seek(0)
    count, left = 0, end
    while left > 0:
        chunk = f.read(min(SCAN_CHUNK, left))
        if not chunk:
            break
        count += chunk.count(b"\n")
        left -= len(chunk)
    return count


def find(path: Path, query: str, after: int) -> int | None:
    """The byte offset of the first line at or after byte `after` that holds
    `query` (ignoring case), None if there is none; reads `SCAN_CHUNK`s."""
    needle = query.encode()[:MAX_QUERY].lower()
    if not needle:
        return None
    overlap = len(needle) - 1
    with path.open("rb") as f:
        position = max(0, after)
        f.seek(position)
        carry = b""
        while True:
            chunk = f.read(SCAN_CHUNK)
            if not chunk:
                return None
            window = carry + chunk
            hit = window.lower().find(needle)
            if hit >= 0:
                absolute = position - len(carry) + hit
                line_start = window.rfind(b"\n", 0, hit)
                if line_start >= 0:
                    return position - len(carry) + line_start + 1
                return _line_start(f, absolute)
            carry = window[-overlap:] if overlap else b""
            position += len(chunk)


def _line_start(f: BinaryIO, absolute: int) -> int:
    """Where the line holding byte `absolute` starts (looking back at most a page)."""
    back = max(0, absolute - PAGE)
    f.seek(back)
    before = f.read(absolute - back)
    newline = before.rfind(b"\n")
    return back + newline + 1 if newline >= 0 else back
