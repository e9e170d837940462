"""`phalanx serve` on a bad day: a database that is damaged, locked or on a
full disk at start is one clear line and exit 3; a disk that fills while
the service runs gives clear 503s (no traceback per request, no tight
loop), and the run that could not be recorded ends `error` with that
reason once space is back; a database that cannot be read ends the event
streams under way with one `unavailable` event each, and one log line, and
`phalanx submit --wait` says so once and follows the run on after it. The full disk is real: a small tmpfs (root);
where it cannot be mounted the tests that need it skip, saying why."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.eventually import eventually, never
from tests.service.test_admin import PASSWORD
from tests.service.test_serve import make_repo, start, stop, user_token, wait_case_a
from tests.store.locks import wal_read_locks_held

pytestmark = pytest.mark.timeout(300)


def serve_once(tmp: Path, data: Path, within: float = 90) -> subprocess.CompletedProcess[str]:
    """`phalanx serve` that is expected to give up at start."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    return subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "serve", "--repo", str(make_repo(tmp / "defs")),
         "--listen", "127.0.0.1:0", "--data", str(data)],
        cwd=tmp, capture_output=True, text=True, timeout=within, env=clean,
    )  # fmt: skip


def one_clear_line(done: subprocess.CompletedProcess[str], words: str) -> None:
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, done.stderr
    assert "cannot serve: database sqlite" in errors[0] and words in errors[0], errors[0]


def test_a_damaged_database_at_start_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "phalanx.db").write_bytes(b"not a database at all " * 500)
    one_clear_line(serve_once(tmp_path, data), "not a database")


def test_a_database_locked_by_another_process_at_start_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "db", "upgrade", "--data", str(data)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    # As a backup tool or the sqlite3 shell may: the whole file, readers too,
    # for as long as the connection lives.
    holder = sqlite3.connect(data / "phalanx.db", isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("DELETE FROM runs WHERE 0")
        holder.execute("COMMIT")
        done = serve_once(tmp_path, data)
    finally:
        holder.close()
    one_clear_line(done, "locked")


@contextlib.contextmanager
def small_disk(where: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of `size_mb` at `where`, unmounted after."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if mounted.returncode != 0:
        why = f"cannot mount a small tmpfs for a full disk: {mounted.stderr.strip()}"
        print(why)
        pytest.skip(why)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def fill(disk: Path) -> Path:
    """Fill `disk` to its last byte; the filler file, to delete for space back."""
    filler = disk / f"filler-{uuid.uuid4().hex}"
    chunk = b"\0" * (1 << 16)
    # Unbuffered: a write the disk took only part of leaves nothing behind
    # for the close to write (and fail on) again.
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    # Smaller writes too, until not one byte more fits.
    with contextlib.suppress(OSError), filler.open("ab", buffering=0) as out:
        while True:
            out.write(b"\0" * 512)
    return filler


def test_a_full_disk_at_start_is_one_line(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 4) as disk:
        fill(disk)
        done = serve_once(tmp_path, disk / "data")
    one_clear_line(done, "full")


def test_a_disk_filling_while_serving_gives_503s_and_the_run_ends_error_after(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk", 64) as disk:
        served = start(tmp_path, make_repo(tmp_path / "defs"), disk / "data")
        try:
            token = user_token(served, "otto", "operator")
            with served.client(token) as client:
                run_id = client.post("/api/suites/slow/runs").json()["id"]
                eventually(
                    lambda: client.get(f"/api/runs/{run_id}").json()["status"] == "running",
                    within=60,
                    what=f"run {run_id} running",
                )
                filler = fill(disk)
                # While it is full: a clear answer to each request, not a 500.
                login = {"name": "otto", "password": PASSWORD}
                answers = []
                for _ in range(40):
                    answers.append(httpx.post(f"{served.url}/api/login", json=login, timeout=30))
                    time.sleep(0.05)
                assert {a.status_code for a in answers} == {503}, answers[0].text
                assert "full" in answers[0].json()["message"]
                assert answers[0].headers["retry-after"]
                # The run's end cannot be recorded yet (the slow case sleeps 4 s).
                never(
                    lambda: client.get(f"/api/runs/{run_id}").json()["status"] != "running",
                    window=8,
                    what="the run recorded as ended on a full disk",
                )
                filler.unlink()  # space is back
                run = eventually(
                    lambda: (
                        (run := client.get(f"/api/runs/{run_id}").json())["status"] != "running"
                        and run
                    ),
                    within=120,
                    what=f"run {run_id} ended",
                )
                assert run["status"] == "error"
                assert "could not be recorded" in run["reason"], run
                assert "full" in run["reason"] or "space" in run["reason"], run
                assert httpx.post(f"{served.url}/api/login", json=login, timeout=30).is_success
        finally:
            stop(served)
        log = served.log.read_text()
    assert "Traceback" not in log, log[-5000:]
    # One line a minute for the requests, not one each.
    assert log.count("the store cannot be used") <= 2, log[-5000:]


class EventReader:
    """An event stream read in a thread: its events as (name, data), and
    whether it has ended."""

    def __init__(self, url: str, token: str) -> None:
        self.events: list[tuple[str, str]] = []
        self.ended = threading.Event()
        self.problem: BaseException | None = None
        self._thread = threading.Thread(target=self._read, args=(url, token), daemon=True)
        self._thread.start()

    def _read(self, url: str, token: str) -> None:
        try:
            headers = {"Authorization": f"Bearer {token}"}
            timeout = httpx.Timeout(30, read=120)
            with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
                assert response.status_code == 200, response.read()
                name, data = "message", []
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        name = line.removeprefix("event:").strip()
                    elif line.startswith("data:"):
                        data.append(line.removeprefix("data:").strip())
                    elif not line and data:
                        self.events.append((name, "\n".join(data)))
                        name, data = "message", []
        except BaseException as exc:  # seen by the test, not lost in its thread
            self.problem = exc
        finally:
            self.ended.set()


def test_event_streams_end_with_one_clean_event_when_the_database_cannot_be_read(
    tmp_path: Path,
) -> None:
    served = start(tmp_path, make_repo(tmp_path / "defs"), tmp_path / "data")
    follower: subprocess.Popen[str] | None = None
    try:
        token = user_token(served, "vera", "operator")
        (tmp_path / "token").write_text(token + "\n")
        # `phalanx submit --wait` follows the run through it all.
        with (tmp_path / "submit.out").open("w") as out, (tmp_path / "submit.err").open("w") as err:
            follower = subprocess.Popen(
                [sys.executable, "-m", "phalanx.cli", "submit", "long", "--coordinator",
                 served.url, "--token-file", "token", "--wait"],
                cwd=tmp_path, stdout=out, stderr=err, text=True, start_new_session=True,
            )  # fmt: skip
        with served.client(token) as client:
            run_id = eventually(
                lambda: [r["id"] for r in client.get("/api/runs").json()],
                within=60,
                what="the submitted run",
            )[0]
            wait_case_a(client, run_id)  # case b's stage sleeps a minute: the run stays live
            # The follower reads the run's stream too (it has printed case a's end).
            eventually(
                lambda: " a: passed" in (tmp_path / "submit.out").read_text(),
                within=60,
                what="`phalanx submit --wait` following the run",
            )
            api = f"/api/runs/{run_id}/events"
            readers = {
                path: EventReader(served.url + path, token)
                for path in (api, f"/runs/{run_id}/live", "/live/dashboard")
            }
            eventually(
                lambda: all(r.events for r in readers.values()),
                within=60,
                what="each stream's first event",
            )
            # Another process holds the database's locks: no read can begin.
            with wal_read_locks_held(served.data / "phalanx.db"):
                for path, reader in readers.items():
                    assert reader.ended.wait(90), f"{path} went on while the database was locked"
                    assert reader.problem is None, (path, reader.problem)
                    name, data = reader.events[-1]
                    assert name == "unavailable", (path, reader.events[-1])
                    assert "locked by another process" in data, (path, data)
            assert "cannot use its database" in json.loads(readers[api].events[-1][1])["message"]
            # The lock gone, the run reads again, still running.
            assert client.get(f"/api/runs/{run_id}").json()["status"] == "running"
            assert client.post(f"/api/runs/{run_id}/cancel").status_code == 202
            assert follower.wait(120) == 130  # a cancelled run's exit code
    finally:
        if follower is not None and follower.poll() is None:
            os.killpg(follower.pid, signal.SIGKILL)
            follower.wait(30)
        stop(served)
    # The follower said the outage once, waited, and saw the run to its end.
    said = (tmp_path / "submit.err").read_text()
    assert said.count("cannot use its database") == 1, said
    assert "Traceback" not in said and "error:" not in said, said
    assert "cancelled" in (tmp_path / "submit.out").read_text()
    log = served.log.read_text()
    assert "Traceback" not in log, log[-5000:]
    # One line for the three streams' failure, not one each.
    assert log.count("the store cannot be used") == 1, log[-5000:]
