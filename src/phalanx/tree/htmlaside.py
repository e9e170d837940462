"""report.html of a tree run, written by a process forked when the run
starts, beside it.

The page costs Jinja2's import and its templates (tens of milliseconds, a
good part of a small run's fixed cost) and then the most of the reports'
time per test. Forked before the tree is loaded, the helper imports and
compiles while this process loads the tree and runs the tests on one core
and, once results.json is written, renders the page from that file while
this process writes JUnit and TAP.

The page is the same either way: results.json holds the report the page is
rendered from, as it was in memory. Whenever the helper cannot do it (this
process has threads already, so forking is not safe; the helper failed, was
killed or took too long) the caller writes the page itself.

The helper holds nothing but the read end of a pipe: it reads one request,
or end of file when this process ends without one (an error, Ctrl-C, a
kill), and then exits. It ignores SIGINT, which the terminal sends the
whole process group: the run decides how to stop and still asks for its
page.
"""

from __future__ import annotations

import json
import os
import select
import signal
import threading
from collections.abc import Iterable
from pathlib import Path

# The page of a very big run takes seconds; past this the helper is taken
# for stuck, killed, and the page written here.
FINISH_TIMEOUT = 120.0
REQUEST_LIMIT = 1024 * 1024  # a request names a few paths


class HtmlAside:
    def __init__(self, pid: int, request: int) -> None:
        self.pid = pid
        self._request: int | None = request  # the pipe's write end, until the request is sent
        self._sent = False

    @classmethod
    def start(cls) -> HtmlAside | None:
        """Fork the helper; None where forking is not safe or not possible
        (the page is then written in this process)."""
        if not hasattr(os, "fork") or threading.active_count() != 1:
            return None
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_end)
            os.close(write_end)
            return None
        if pid == 0:  # the helper; never returns
            os.close(write_end)
            _helper(read_end)
        os.close(read_end)
        # Imported once forked: the helper starts on its imports the sooner.
        from phalanx.host.process import own

        own(pid)  # a helper of this run's, not a test's escaped process
        return cls(pid, write_end)

    def ask(
        self, results_json: Path, html: Path, links: Iterable[tuple[str, Path]], run_dir: Path
    ) -> None:
        """Have the page written at `html` from the report in `results_json`
        (as `report.html.write_html` writes it)."""
        if self._request is None:
            return
        request = {
            "json": str(results_json),
            "html": str(html),
            "links": [[label, str(path)] for label, path in links],
            "run_dir": str(run_dir),
        }
        data = json.dumps(request).encode()
        try:
            # Well under the pipe's buffer: one write that does not block.
            if len(data) < select.PIPE_BUF:
                os.write(self._request, data)
                self._sent = True
        except OSError:  # the helper is gone
            pass
        self._end_request()

    def finish(self, timeout: float = FINISH_TIMEOUT) -> bool:
        """Wait for the helper; whether it wrote the page."""
        self._end_request()
        status = self._reap(timeout)
        return self._sent and status == 0

    def close(self) -> None:
        """No page wanted (an error, Ctrl-C): the helper ends without one."""
        self._end_request()
        self._reap(FINISH_TIMEOUT)

    def _end_request(self) -> None:
        if self._request is not None:
            os.close(self._request)
            self._request = None

    def _reap(self, timeout: float) -> int | None:
        """The helper's exit code, once it has exited (killed after
        `timeout`); None if it cannot be known."""
        from phalanx.host.process import disown

        if self.pid == 0:
            return None
        pid, self.pid = self.pid, 0
        try:
            pidfd = os.pidfd_open(pid)
            try:
                ready, _, _ = select.select([pidfd], [], [], timeout)
            finally:
                os.close(pidfd)
            if not ready:
                os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)  # it has exited, or is killed
        except (OSError, ChildProcessError):
            return None
        finally:
            disown(pid)
        return os.waitstatus_to_exitcode(status)


def _helper(request: int) -> None:
    """The forked helper's life: import and compile, read the request, write
    the page, exit 0; exit 1 on anything else. It never returns: os._exit
    keeps it from flushing buffers or running handlers it inherited."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        from phalanx.report.html import prepare, write_html

        prepare()
        chunks = []
        size = 0
        while chunk := os.read(request, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > REQUEST_LIMIT:
                os._exit(1)
        if chunks:
            asked = json.loads(b"".join(chunks))
            # The stdlib's decoder: as quick here, and orjson's import (uuid,
            # platform) would cost the helper more than the decoding.
            report = json.loads(Path(asked["json"]).read_bytes())
            links = [(str(label), Path(path)) for label, path in asked["links"]]
            html = Path(asked["html"])
            write_html(report, html, links=links, run_dir=Path(asked["run_dir"]))
            code = 0
    finally:  # whatever went wrong, silently: the run writes the page itself
        os._exit(code)
