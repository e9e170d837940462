"""`phalanx serve`'s start: how long from the command to the first answer
of `/healthz`, on a data folder made the first time and one already
migrated (the usual restart), and the CPU time the service used until then
(what a busy machine's load does not change). Also `phalanx token create`,
an admin command, start to exit.

Target: /healthz answered within 1.5 s on an idle machine (issue 23).

    .venv/bin/python bench/serve.py [--times 5] [--anchor ../main/.venv/bin/python]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TARGET_S = 1.5


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_once(data: Path, python: str) -> tuple[float, float]:
    """(seconds to the first /healthz answer, CPU seconds the service used)."""
    port = _port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-m", "phalanx.cli", "serve", "--listen", f"127.0.0.1:{port}",
         "--data", str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = started + 120
        while time.perf_counter() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return time.perf_counter() - started, _cpu(proc.pid)
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        raise SystemExit("the service did not answer within 120 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _spread(values: list[float]) -> str:
    return (f"min {min(values):.2f}  median {statistics.median(values):.2f}"
            f"  max {max(values):.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--times", type=int, default=5)
    parser.add_argument(
        "--anchor", metavar="PYTHON",
        help="also start another phalanx (its venv's python, e.g. main's) in the same rounds",
    )  # fmt: skip
    args = parser.parse_args()
    pythons = {"this": sys.executable} | ({"anchor": args.anchor} if args.anchor else {})
    # Each round starts every phalanx on a new folder, then on that folder
    # again (migrated): a load that comes and goes weighs on all alike.
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.times):
            for name, python in pythons.items():
                data = Path(tmp) / f"{name}-{round_}"
                times.setdefault((name, "new"), []).append(serve_once(data, python))
                times.setdefault((name, "migrated"), []).append(serve_once(data, python))
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "phalanx.cli", "token", "create", "h1.t.test",
             "--data", str(Path(tmp) / "this-0")],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        token_s = time.perf_counter() - started
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end;"
          f" {args.times} rounds, seconds")  # fmt: skip
    for (name, folder), found in times.items():
        walls, cpus = [w for w, _ in found], [c for _, c in found]
        print(f"{name:>6} {folder + ' folder:':<17} to /healthz {_spread(walls)}"
              f"   CPU {_spread(cpus)}")  # fmt: skip
    for name in pythons:
        new, migrated = ([c for _, c in times[(name, f)]] for f in ("new", "migrated"))
        print(f"{name:>6} new/migrated CPU ratio (median): "
              f"{statistics.median(new) / statistics.median(migrated):.2f}")  # fmt: skip
    if args.anchor:
        this, anchor = ([c for _, c in times[(n, "new")]] for n in ("this", "anchor"))
        print(f"new folder CPU, this/anchor (median): "
              f"{statistics.median(this) / statistics.median(anchor):.2f}")  # fmt: skip
    print(f"token create: {token_s:.2f} s")
    best = max(min(w for w, _ in times[("this", f)]) for f in ("new", "migrated"))
    print(f"target: /healthz within {TARGET_S} s on both folders (best of each): "
          f"{'met' if best <= TARGET_S else 'NOT met'} ({best:.2f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
