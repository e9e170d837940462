"""Cross-site request forgery against the API: a page on another origin (here
another port of the same host, which SameSite=Lax counts as the same site)
makes the signed-in admin's browser POST to `/api/*`. A browser sends the
session cookie and its page's `Origin`; the service must refuse the write."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.test_admin import PASSWORD
from tests.service.test_serve import Served, make_repo, start, stop, user_token

FOREIGN = "http://127.0.0.1:1"  # another port of the same host


@pytest.fixture
def admin_browser(tmp_path: Path) -> Iterator[tuple[Served, httpx.Client]]:
    served = start(tmp_path, make_repo(tmp_path / "defs"), tmp_path / "data")
    try:
        served.admin("user", "add", "ada", "--role", "admin", stdin=PASSWORD + "\n")
        with httpx.Client(base_url=served.url, timeout=30) as browser:
            signed = browser.post("/api/login", json={"name": "ada", "password": PASSWORD})
            assert signed.status_code == 200, signed.text
            yield served, browser
    finally:
        stop(served)


def test_cookie_writes_from_another_origin_are_refused(
    admin_browser: tuple[Served, httpx.Client],
) -> None:
    served, browser = admin_browser
    foreign = {"Origin": FOREIGN}
    for path in ("/api/suites/good/runs", "/api/runs/nope/cancel", "/api/logout"):
        answer = browser.post(path, headers=foreign)
        assert answer.status_code == 403, (path, answer.text)
        assert "another site" in answer.json()["message"]
    # A Referer of another origin is no better, and neither is no origin at all:
    # a browser's own pages always say where a write comes from.
    assert (
        browser.post("/api/suites/good/runs", headers={"Referer": FOREIGN + "/x"}).status_code
        == 403
    )
    assert browser.post("/api/suites/good/runs").status_code == 403
    token = user_token(served, "otto", "operator")
    with served.client(token) as client:
        assert client.get("/api/runs").json() == []  # nothing started
    # still signed in: the forged logout did nothing
    assert browser.get("/api/runs").status_code == 200


def test_cookie_writes_from_the_services_own_pages_pass(
    admin_browser: tuple[Served, httpx.Client],
) -> None:
    served, browser = admin_browser
    ours = served.url
    started = browser.post("/api/suites/good/runs", headers={"Origin": ours})
    assert started.status_code == 201, started.text
    by_referer = browser.post("/api/suites/good/runs", headers={"Referer": ours + "/suites"})
    assert by_referer.status_code == 201, by_referer.text
    assert browser.post("/api/logout", headers={"Origin": ours}).status_code == 200
    assert browser.get("/api/runs").status_code == 401


def test_token_writes_need_no_origin(admin_browser: tuple[Served, httpx.Client]) -> None:
    served, _ = admin_browser
    token = user_token(served, "otto", "operator")
    with served.client(token) as client:
        assert client.post("/api/suites/good/runs").status_code == 201
