"""`/docs` works with no network (Swagger UI's files come from the package)
and under the pages' Content-Security-Policy; `report.html` served under
`/runs/…/files/` carries that policy too. Against a real `phalanx serve`;
the browser part in Debian's Chromium with every request off this machine
refused, skipped (saying why) where Chromium or Playwright is missing."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.service.web.render import SECURITY_HEADERS
from tests.service.test_serve import Served, make_repo, start, stop, user_token, wait_run
from tests.service.web.helpers import signed_in

CSP = SECURITY_HEADERS["Content-Security-Policy"]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("apidocs")
    service = start(tmp, make_repo(tmp / "defs"), tmp / "data")
    try:
        yield service
    finally:
        stop(service)


def test_docs_loads_nothing_from_elsewhere_and_has_the_pages_csp(served: Served) -> None:
    with served.client() as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CSP
        linked = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert linked, page.text
        assert all(url.startswith("/") and not url.startswith("//") for url in linked), linked
        assert "<script>" not in page.text  # no inline script: the CSP would refuse it
        for url in linked:
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 0, url
        assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text


def test_report_html_under_files_carries_the_pages_csp(served: Served) -> None:
    token = user_token(served, "otto", "operator")
    with served.client(token) as client:
        answer = client.post("/api/suites/good/runs")
        assert answer.status_code in (200, 201, 202), answer.text
        run_id = answer.json()["id"]
        wait_run(client, run_id, ("passed",))
    with signed_in(served, "otto") as client:
        report = client.get(f"/runs/{run_id}/files/report.html")
        assert report.status_code == 200, report.text
        assert report.headers["content-type"].startswith("text/html")
        assert report.headers["content-security-policy"] == CSP
        assert report.headers["x-content-type-options"] == "nosniff"


def _no_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not Path(CHROMIUM).exists():
        return "chromium is not installed (apt-get install chromium)"
    return None


@pytest.mark.timeout(300)
def test_swagger_ui_renders_with_every_outside_request_refused(served: Served) -> None:
    if (why := _no_browser()) is not None:
        print(f"skipping the /docs browser test: {why}")
        pytest.skip(why)
    from playwright.sync_api import Route, expect, sync_playwright

    outside: list[str] = []
    refused: list[str] = []

    def only_here(route: Route) -> None:
        if route.request.url.startswith(served.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.route("**/*", only_here)
            page.on(
                "console",
                lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
            )
            page.goto(f"{served.url}/docs")
            # Swagger UI drew the API from /openapi.json: an operation is there.
            expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=60_000)
            expect(page.get_by_text("/api/runs", exact=True).first).to_be_visible()
        finally:
            browser.close()
    assert outside == []
    assert refused == []
