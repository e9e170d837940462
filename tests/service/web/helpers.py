"""A real `phalanx serve` for the web UI's tests: a definitions repo with
suites that pass, fail, take a while and print a lot, and the users a
viewer, an operator and an admin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.eventually import eventually
from tests.service.test_admin import PASSWORD
from tests.service.test_serve import Served, make_repo, start, stop

BIG_LINES = 340_000  # ~20 MB of output
LAST_LINE = "LAST LINE OF THE BIG OUTPUT"
MEDIUM_LINES = 6000  # ~300 KB
MEDIUM_LINE = "medium line %.0f, some words to give the line a width"
WEB_SUITES = {
    # two cases a few seconds apart: the run page changes while one watches
    "steps": (
        "tests: [a, b]\n",
        {"a": "echo step a; sleep 2\n", "b": "echo step b done; sleep 2\n"},
    ),
    "big": (
        "tests: [a]\n",
        {
            "a": f"seq -f 'line %.0f of a long output, with some words to make it wide' {BIG_LINES}\n"
            "echo 'warning: nearly done'\n"
            "echo 'error: this line is red'\n"
            f"echo '{LAST_LINE}'\n"
        },
    ),
    "chatty": ("tests: [a]\n", {"a": "for i in $(seq 1 40); do echo tick $i; sleep 0.25; done\n"}),
    # a few pages of output (the viewer's page is 64 KiB): End and Find land mid-file
    "medium": ("tests: [a]\n", {"a": f"seq -f '{MEDIUM_LINE}' {MEDIUM_LINES}\n"}),
    # a register whose read misses the write before it: the check fails the case
    "stale": (
        "tests:\n  - a: {check: register}\n",
        {
            "a": "phalanx-op --key x write 1 -- true\n"
            "phalanx-op --key x write 2 -- true\n"
            "phalanx-op --key x read -- echo 1 > /dev/null\n"
        },
    ),
}


def make_web_repo(root: Path) -> Path:
    make_repo(root)
    for name, (head, cases) in WEB_SUITES.items():
        for case, script in cases.items():
            folder = root / "test-suites" / name / "tc" / case
            folder.mkdir(parents=True)
            (folder / "run.sh").write_text(script)
        (root / "test-suites" / name / "suite.yaml").write_text(
            f"cluster: one\n{head}timeout: 120\n"
        )
    # case a passes and fails by turns, case b always passes: a is flaky
    state = root.parent / f"flip-{root.name}"
    for case, script in (
        ("a", f"if [ -e {state} ]; then rm {state}; exit 1; else touch {state}; fi\n"),
        ("b", "echo steady\n"),
    ):
        (root / "test-suites" / "flip" / "tc" / case).mkdir(parents=True)
        (root / "test-suites" / "flip" / "tc" / case / "run.sh").write_text(script)
    (root / "test-suites" / "flip" / "suite.yaml").write_text("cluster: one\ntests: [a, b]\n")
    # two hosts: the timeline has a lane each
    (root / "clusters" / "two.yaml").write_text(
        "name: two\nprovider: local\nhosts:\n  - {name: h2a.t.test}\n  - {name: h2b.t.test}\n"
    )
    (root / "test-suites" / "pair" / "tc" / "a").mkdir(parents=True)
    (root / "test-suites" / "pair" / "tc" / "a" / "run.sh").write_text(
        "sleep 1; echo on @slavename@\n"
    )
    (root / "test-suites" / "pair" / "suite.yaml").write_text("cluster: two\ntests: [a]\n")
    broken = root / "test-suites" / "broken"
    broken.mkdir(parents=True)
    (broken / "suite.yaml").write_text("cluster: nowhere\ntests: [zz]\n")
    return root


def add_users(served: Served) -> None:
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
        served.admin("user", "add", name, "--role", role, stdin=PASSWORD + "\n")


@contextmanager
def signed_in(served: Served, name: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        answer = client.post("/login", data={"name": name, "password": PASSWORD, "next": "/"})
        assert answer.status_code == 303, answer.text
        yield client


def wait_status(
    client: httpx.Client, run_id: str, until: tuple[str, ...], within: float = 90
) -> str:
    def ended() -> str | None:
        status: str = client.get(f"/api/runs/{run_id}").json()["status"]
        return status if status in until else None

    return eventually(ended, within=within, what=f"run {run_id} {'/'.join(until)}")


def run_id_of(location: str) -> str:
    found = re.fullmatch(r"/runs/([^/?]+)", location)
    assert found, location
    return found.group(1)


@contextmanager
def web_service(tmp: Path) -> Iterator[Served]:
    """A real `phalanx serve` of make_web_repo's suites, with its users, for a block."""
    served = start(tmp, make_web_repo(tmp / "defs"), tmp / "data")
    try:
        add_users(served)
        yield served
    finally:
        stop(served)
