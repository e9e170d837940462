"""What reaches a person's terminal: program output made safe to show, and
a stream that never stops a run.

Output arrives as the bytes programs wrote, cut anywhere. `Lines` turns
them into whole lines at a cost linear in the bytes (a few passes of C code
over each piece, never a loop per line or a rebuild of a line that keeps
growing): escape sequences removed (no colors, no cursor moves, no window
titles), other control characters shown as `\\xNN` (as `.` in binary
junk), carriage returns resolved as a terminal would, and a line longer
than `LINE_SHOWN` bytes cut, with its length: `… [52,428,800 bytes]`. The
stored output file keeps every byte.

`Terminal` writes to the user's stream from a thread of its own, so a slow
reader (a terminal that scrolls, `| less`) never holds the event loop:
lines of its own always wait their turn, program output beyond `BACKLOG`
bytes is skipped, and a note says how much. When the reader is gone
(`| head -3`) it goes quiet instead of raising, and the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from phalanx.load.errors import DefinitionError

LINE_SHOWN = 400  # bytes of a line shown; a longer one is cut and its length given
BACKLOG = 4 * 1024 * 1024  # bytes of program output waiting for a slow reader
CLOSE_WAIT = 10.0  # seconds a closing Terminal waits for a reader that takes nothing
# Seconds the writer thread, having written, lets the console's lines
# gather before it writes again: events come in bursts (a host's line per
# result), and one write per burst costs one wake of the thread instead of
# one per line. Programs' output cuts the pause short: it keeps flowing.
GATHER = 0.01
MANY_CONTROLS = 256  # more in one piece: binary, shown as dots rather than \xNN each

# Escapes in their 7-bit form, found by their ESC: CSI (colors, cursor
# moves), OSC and the other string controls (window titles, hyperlinks; up
# to BEL or ST, or the end of the line), and the two-byte ones.
_ESC = re.compile(
    rb"\x1b(?:\[[0-?]*[ -/]*[@-~]?|[\]PX^_][^\x07\x1b\n]*(?:\x07|\x1b\\)?|[ -/]*[0-~]?)"
)
# The same in their C1 form, once decoded (U+0080..U+009F).
_C1_ESC = re.compile("\x9b[0-?]*[ -/]*[@-~]?|[\x90\x98\x9d\x9e\x9f][^\x07\x9c\n]*[\x07\x9c]?")
_C1 = re.compile("[\x80-\x9f]")
_C0 = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
# What needs no care: printable ASCII, tab, newline, and bytes from 0x80 up
# (UTF-8; the C1 controls among them are found once decoded).
_FINE = bytes([9, 10, *range(0x20, 0x7F), *range(0x80, 0x100)])
_C0_DOTS = bytes.maketrans(bytes([*range(0, 9), *range(11, 32), 127]), b"." * 31)
_RETURNS = re.compile(rb"(?m)^[^\n]*\r")  # a line up to its last CR: what a terminal overwrote
_FLAT = bytes.maketrans(bytes(b for b in range(256) if b != 10), b"a" * 255)
_LONG_RUN = b"a" * (LINE_SHOWN + 1)


def count(size: int) -> str:
    """`52,428,800 bytes`; `1 byte`."""
    return f"{size:,} byte{'s' if size != 1 else ''}"


def _cut_mark(size: int) -> bytes:
    return f"… [{count(size)}]".encode()


def _head(data: bytes | bytearray, size: int) -> bytes:
    """The first `size` bytes, not ending inside a UTF-8 character."""
    end = size
    for j in range(size - 1, max(size - 4, -1), -1):
        lead = data[j]
        if lead < 0x80:
            break
        if lead >= 0xC0:  # the last character's first byte: is it whole?
            length = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
            if j + length > size:
                end = j
            break
    return bytes(data[:end])


def _cut_long(body: bytes) -> bytes:
    """Every line longer than LINE_SHOWN cut, with its length. Finding them
    is one translate and one substring search; only long lines cost a step."""
    flat = body.translate(_FLAT)
    found = flat.find(_LONG_RUN)
    if found < 0:
        return body
    parts: list[bytes] = []
    done = 0
    while found >= 0:
        start = body.rfind(b"\n", 0, found) + 1
        end = body.find(b"\n", found)
        end = len(body) if end < 0 else end
        parts += [body[done:start], _head(body[start:end], LINE_SHOWN), _cut_mark(end - start)]
        done = end
        found = flat.find(_LONG_RUN, end)
    parts.append(body[done:])
    return b"".join(parts)


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def _visible_byte(match: re.Match[bytes]) -> bytes:
    return b"\\x%02x" % match.group()[0]


def _show(body: bytes, cut: bool = True) -> str:
    """Lines (joined by newlines, none at the end) as they may be shown."""
    odd = body.translate(None, _FINE)  # the bytes that need care, usually none
    returns, escapes = odd.count(b"\r"), odd.count(b"\x1b")
    if len(odd) - returns - escapes > MANY_CONTROLS:  # binary: every control a dot
        body, odd = body.translate(_C0_DOTS), b""
    if returns:
        body = body.replace(b"\r\n", b"\n")
        if b"\r" in body:
            body = _RETURNS.sub(b"", body)
    if escapes:
        body = _ESC.sub(b"", body)
    if cut and len(body) > LINE_SHOWN:
        body = _cut_long(body)
    if odd and (body.translate(None, _FINE)):
        body = _C0.sub(_visible_byte, body)
    text = body.decode("utf-8", errors="replace")
    if not body.isascii() and b"\xc2" in body and _C1.search(text):
        text = _C1.sub(_visible, _C1_ESC.sub("", text))
    return text


def safe_text(text: str) -> str:
    """`text` without escape sequences, its other controls as `\\xNN` (tabs
    and newlines stay); lines are not cut."""
    if text.isascii() and text.isprintable():  # most lines: nothing to show otherwise
        return text
    return _show(text.encode("utf-8", errors="replace"), cut=False)


@dataclass
class _Partial:
    """The start of a line not ended yet: at most LINE_SHOWN + 3 bytes of
    it, and its whole length."""

    head: bytearray = field(default_factory=bytearray)
    size: int = 0

    def add(self, data: bytes) -> None:
        room = LINE_SHOWN + 3 - len(self.head)
        if room > 0:
            self.head += data[:room]
        self.size += len(data)

    def line(self) -> bytes:
        if self.size <= LINE_SHOWN:
            return bytes(self.head)
        return _head(self.head, LINE_SHOWN) + _cut_mark(self.size)


class Lines:
    """Whole lines out of output cut anywhere, one stream per key (a host's
    stage). `feed` returns the lines a piece completed, `flush` the line
    left unfinished when the stream ends; both as text ready to show, each
    line ending in a newline ("" for none)."""

    def __init__(self) -> None:
        self._partial: dict[Hashable, _Partial] = {}

    def feed(self, key: Hashable, data: bytes) -> str:
        first = data.find(b"\n")
        if first < 0:
            if data:
                self._partial.setdefault(key, _Partial()).add(data)
            return ""
        partial = self._partial.pop(key, None)
        last = data.rfind(b"\n")
        if partial is None:
            shown = _show(data[:last]) + "\n"
        else:
            partial.add(data[:first])
            # The line it finished went through its own cut.
            shown = _show(partial.line(), cut=False) + "\n"
            if last > first:
                shown += _show(data[first + 1 : last]) + "\n"
        if last + 1 < len(data):
            self._partial.setdefault(key, _Partial()).add(data[last + 1 :])
        return shown

    def flush(self, key: Hashable) -> str:
        partial = self._partial.pop(key, None)
        if partial is None or not partial.size:
            return ""
        return _show(partial.line(), cut=False) + "\n"


def last_lines(text: str, n: int) -> list[str]:
    """The last `n` lines of shown text."""
    text = text.rstrip("\n")
    return text.rsplit("\n", n)[-n:] if text else []


def prefixed(prefix: str, text: str) -> str:
    """Every line of `text` (each ending in a newline) with `prefix` before it."""
    return prefix + text[:-1].replace("\n", "\n" + prefix) + "\n" if text else ""


# --- a queue of what to show --------------------------------------------------------


class Shown:
    """What waits to be shown, in order: lines of the console's own (always
    kept) and programs' output (raw bytes, per stream; skipped and counted
    while more than `backlog` bytes of it wait). Filled from the event loop
    at the cost of an append; `take`, on the consumer's thread, does the
    line work."""

    def __init__(self, backlog: int = BACKLOG) -> None:
        self.backlog = backlog
        self.lock = threading.Condition()
        self._items: list[tuple[str, Hashable, str, bytes | str]] = []
        self._waiting = 0  # bytes of output in _items
        self._skipped: dict[Hashable, tuple[str, int]] = {}  # key -> prefix, bytes
        self._lines = Lines()

    def __bool__(self) -> bool:
        return bool(self._items)

    def line(self, text: str) -> None:
        with self.lock:
            self._items.append(("line", None, "", text))
            self.lock.notify_all()

    def output(self, key: Hashable, prefix: str, data: bytes) -> None:
        with self.lock:
            if self._waiting > self.backlog:
                _, size = self._skipped.get(key, (prefix, 0))
                self._skipped[key] = (prefix, size + len(data))
                return
            self._note(key)
            self._items.append(("data", key, prefix, data))
            self._waiting += len(data)
            self.lock.notify_all()

    def end(self, key: Hashable, prefix: str) -> None:
        """The stream `key` ended: its unfinished line is shown."""
        with self.lock:
            self._note(key)
            self._items.append(("end", key, prefix, b""))
            self.lock.notify_all()

    def _note(self, key: Hashable) -> None:
        skipped = self._skipped.pop(key, None)
        if skipped is not None:
            prefix, size = skipped
            self._items.append(("skipped", key, prefix, str(size)))

    def clear(self) -> None:
        with self.lock:
            self._items.clear()
            self._skipped.clear()
            self._waiting = 0

    def take(self) -> str:
        """Everything waiting, as text (a consumer's thread calls this)."""
        with self.lock:
            for key in list(self._skipped):
                self._note(key)
            items, self._items, self._waiting = self._items, [], 0
        out: list[str] = []
        lines = self._lines
        for kind, key, prefix, value in items:
            if kind == "line":
                assert isinstance(value, str)
                out.append(value)
            elif kind == "data":
                assert isinstance(value, bytes)
                out.append(prefixed(prefix, lines.feed(key, value)))
            elif kind == "end":
                out.append(prefixed(prefix, lines.flush(key)))
            else:
                out.append(prefixed(prefix, lines.flush(key)))
                out.append(
                    f"{prefix}… {count(int(value))} of output not shown here: the "
                    "terminal fell behind (the run folder has all of it)\n"
                )
        return "".join(out)


# --- a stream that goes quiet ---------------------------------------------------------


def gone(exc: BaseException) -> bool:
    """The reader is gone (a closed pipe, a hung-up terminal, a closed
    descriptor): the run must not notice."""
    return isinstance(exc, BrokenPipeError) or (
        isinstance(exc, OSError) and exc.errno in (errno.EPIPE, errno.EIO, errno.EBADF)
    )


def silence(stream: TextIO | None) -> None:
    """Point `stream`'s descriptor at /dev/null, so that whatever still
    writes to it (the interpreter flushing stdout at exit, a last print)
    succeeds and says nothing."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = stream.fileno()  # type: ignore[union-attr]
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        stream.flush()  # type: ignore[union-attr]  # what its buffer held would fail again


class SafeStream:
    """A text stream whose writes never raise for a reader that is gone:
    from then on it swallows everything. Hand it to Rich as its file."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.quiet = False

    def write(self, text: str) -> int:
        if not self.quiet:
            try:
                self.stream.write(text)
            except (OSError, ValueError) as exc:
                self._quiet(exc)
        return len(text)

    def flush(self) -> None:
        if not self.quiet:
            try:
                self.stream.flush()
            except (OSError, ValueError) as exc:
                self._quiet(exc)

    def _quiet(self, exc: Exception) -> None:
        if isinstance(exc, OSError) and not gone(exc):
            raise exc
        self.quiet = True
        silence(self.stream)

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", None) or "utf-8"

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)


def descriptor(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None


class Terminal:
    """A `Shown` queue written to a stream: from a thread of its own when
    the stream is a real file (a terminal, a pipe), at once when it is not
    (a StringIO). Never raises; goes quiet when the reader is gone."""

    def __init__(self, stream: TextIO, backlog: int = BACKLOG) -> None:
        self.safe = SafeStream(stream)
        self.shown = Shown(backlog)
        self._fd = descriptor(stream)
        self._closing = False
        # Set by programs' output and by closing: the gathering pause ends.
        self._hurry = threading.Event()
        self._busy = False
        self._thread: threading.Thread | None = None
        if self._fd is not None:
            self.safe.flush()  # what was printed before goes first
            self._thread = threading.Thread(target=self._run, name="phalanx-terminal", daemon=True)
            self._thread.start()

    @property
    def quiet(self) -> bool:
        return self.safe.quiet

    def line(self, text: str) -> None:
        self._then(self.shown.line, text)

    def output(self, key: Hashable, prefix: str, data: bytes) -> None:
        self._then(self.shown.output, key, prefix, data)
        self._hurry.set()

    def end(self, key: Hashable, prefix: str) -> None:
        self._then(self.shown.end, key, prefix)
        self._hurry.set()

    def _then(self, put: Callable[..., None], *args: object) -> None:
        if self.safe.quiet:
            return
        put(*args)
        if self._thread is None:  # no thread: written now
            self.safe.write(self.shown.take())
            self.safe.flush()

    def _run(self) -> None:
        lock = self.shown.lock
        while True:
            with lock:
                while not self.shown and not self._closing:
                    lock.wait()
                if not self.shown:
                    return
                self._busy = True
            self._hurry.clear()  # what comes from now on ends the pause below
            try:
                self._put(self.shown.take().encode(self.safe.encoding, errors="replace"))
            finally:
                with lock:
                    self._busy = False
                    lock.notify_all()
            self._hurry.wait(GATHER)

    def _put(self, data: bytes) -> None:
        # Straight to the descriptor: a thread blocked in a write must hold no
        # lock of the stream object that the interpreter wants at exit.
        assert self._fd is not None
        view = memoryview(data)
        while view and not self.safe.quiet:
            try:
                view = view[os.write(self._fd, view) :]
            except InterruptedError:
                continue
            except OSError as exc:
                if gone(exc):
                    self.safe.quiet = True
                    self.shown.clear()
                    silence(self.safe.stream)
                return  # any other failure: this piece is lost, the next may go

    def drain(self, timeout: float = CLOSE_WAIT) -> None:
        """Wait (up to `timeout`) until everything handed over is written."""
        if self._thread is None:
            return
        with self.shown.lock:
            self.shown.lock.wait_for(lambda: not (self.shown or self._busy), timeout)

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Write what waits (up to `timeout`) and stop the thread."""
        thread = self._thread
        if thread is None:
            self.safe.flush()
            return
        with self.shown.lock:
            self._closing = True
            self.shown.lock.notify_all()
        self._hurry.set()
        thread.join(timeout)
        if not thread.is_alive():
            self._thread = None


# --- files and paths, as a person reads them -------------------------------------------

TAIL_BYTES = 16 * 1024  # read from a file's end for its last lines


def file_tail(path: Path, n: int) -> list[str] | None:
    """The last `n` lines of a program's output file, as they may be shown;
    None if it cannot be read. Only the file's end is read."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - TAIL_BYTES)
            f.seek(start)
            data = f.read()
    except OSError:
        return None
    if start > 0:
        first = data.find(b"\n")
        # Without the line the read began in; one long line: its end, marked.
        data = data[first + 1 :] if 0 <= first < len(data) - 1 else "…".encode() + data
    lines = Lines()
    return last_lines(lines.feed(0, data) + lines.flush(0), n)


def shown_path(path: Path | str) -> str:
    """A path as messages name it: relative to where the user stands when
    it is below there, absolute otherwise."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd())) or "."
    except (ValueError, OSError):
        return str(absolute)


def shown_problem(error: DefinitionError) -> str:
    """A definition problem as printed: its file named the way every message
    names paths."""
    if error.file is None:
        return str(error)
    return str(dataclasses.replace(error, file=Path(shown_path(error.file))))


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 case`, `2 cases`."""
    return f"{n} {word if n == 1 else many or word + 's'}"
