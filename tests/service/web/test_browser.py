"""The web UI in a real browser (Debian's Chromium driven by Playwright)
against a real `phalanx serve`: sign in, start a run from the Suites page
and watch it turn live, cancel one, read a 20 MB output to its end; a
viewer has no Run button; every control has a label and axe-core finds no
serious or critical problem on any page; the output viewer shows a line a
row, numbered from the file's start wherever it opens; the tables' action
cells line up with their rows; at a phone's 420 px no page is wider than
the screen. Screenshots go to the session's tmp folder (printed).

Skipped, saying why, when Chromium, npm (for axe-core) or Playwright is
missing; CI installs them.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.test_admin import PASSWORD
from tests.service.test_serve import Served
from tests.service.web.helpers import LAST_LINE, MEDIUM_LINES, web_service

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "phalanx-tests"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT = 60_000  # ms: how long a page may take to show what a test waits for

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - CI installs the test extra
    sync_playwright = None  # type: ignore[assignment]


def _missing() -> str | None:
    if sync_playwright is None:
        return "playwright is not installed (pip install -e '.[test]')"
    if not Path(CHROMIUM).exists():
        return "chromium is not installed (apt-get install chromium)"
    if shutil.which("npm") is None:
        return "npm is not installed (it fetches axe-core)"
    return None


if (why := _missing()) is not None:
    print(f"skipping the browser tests: {why}")
    pytest.skip(why, allow_module_level=True)

expect.set_options(timeout=WAIT)
pytestmark = pytest.mark.timeout(300)  # a real service, real runs and a browser on a busy machine


@pytest.fixture(scope="module")
def axe() -> Path:
    """axe-core from the npm registry, kept in a cache folder between runs."""
    folder = CACHE / "axe-core"
    script = folder / "package" / "axe.min.js"
    if not script.exists():
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "pack", "axe-core@4", "--pack-destination", str(folder)],
            cwd=folder, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        packed = sorted(folder.glob("axe-core-*.tgz"))[-1]
        with tarfile.open(packed) as tar:
            tar.extract("package/axe.min.js", folder, filter="data")
    return script


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with web_service(tmp_path_factory.mktemp("browser")) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _page(browser: Browser, web: Served, name: str, axe: Path) -> Page:
    context = browser.new_context(base_url=web.url, viewport={"width": 1280, "height": 900})
    # axe-core goes in before each page's own scripts: the pages' CSP allows
    # no inline script, so a script tag added later would be refused.
    context.add_init_script(path=str(axe))
    page = context.new_page()
    refused: list[str] = []
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    setattr(page, "csp_refused", refused)  # noqa: B010 - read by _check
    page.set_default_timeout(WAIT)
    page.goto("/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    return page


def _check(page: Page) -> None:
    """Every control has a label, and axe finds nothing serious."""
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button, a[href]')]
            .filter(e => e.type !== 'hidden')
            .filter(e => {
              const label = e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')
                || (e.labels && e.labels.length) || e.title || e.textContent.trim();
              return !label;
            })
            .map(e => e.outerHTML.slice(0, 120))"""
    )
    assert unlabelled == [], unlabelled
    assert getattr(page, "csp_refused", []) == []  # the pages need nothing their CSP refuses
    found: list[dict[str, Any]] = page.evaluate("async () => (await axe.run()).violations")
    serious = [
        (v["id"], v["impact"], [n["html"][:100] for n in v["nodes"][:3]])
        for v in found
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], f"{page.url}: {serious}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: the session's tmp folder, never the checkout."""
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"screenshots in {folder}")
    return folder


def _shot(page: Page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def _start(page: Page, suite: str) -> str:
    page.goto("/suites")
    page.get_by_role("button", name=f"Run {suite}", exact=True).click()
    page.wait_for_url("**/runs/*")
    return page.url.rsplit("/", 1)[1]


def _chip(page: Page, case: str, host: str) -> Any:
    """The matrix's chip of stage `run` of `case` on `host`."""
    return page.locator(f'#matrix tr[data-case="{case}"] td[data-host="{host}"] [data-stage="run"]')


def test_an_operator_starts_a_run_and_watches_it_turn_live(
    browser: Browser, web: Served, axe: Path, shots: Path
) -> None:
    page = _page(browser, web, "otto", axe)
    _check(page)
    run_id = _start(page, "steps")
    page.evaluate("() => { window.notReloaded = true }")
    status = page.locator("#run-status")
    expect(status).to_have_text("running")
    expect(_chip(page, "b", "h1.t.test")).to_have_count(0)  # case b has not begun
    # case a ends while the page stays
    expect(_chip(page, "a", "h1.t.test")).to_have_attribute("data-status", "passed")
    expect(status).to_have_text("passed")
    assert page.evaluate("() => window.notReloaded") is True  # changed live, no reload
    expect(_chip(page, "b", "h1.t.test")).to_have_attribute("data-status", "passed")
    page.reload()
    _check(page)
    _shot(page, shots, "run")
    page.goto("/")
    expect(page.get_by_role("link", name=run_id).first).to_be_visible()
    _check(page)
    _shot(page, shots, "dashboard")


def test_the_timeline_has_a_lane_per_host(
    browser: Browser, web: Served, axe: Path, shots: Path
) -> None:
    page = _page(browser, web, "otto", axe)
    _start(page, "pair")
    expect(page.locator("#run-status")).to_have_text("passed")
    lanes = page.locator("#timeline svg.timeline g.lane")
    expect(lanes).to_have_count(2)
    assert [lanes.nth(i).get_attribute("data-host") for i in range(2)] == [
        "h2a.t.test",
        "h2b.t.test",
    ]
    expect(lanes.nth(0).locator("rect.bar")).not_to_have_count(0)
    _check(page)
    page.locator("#timeline").screenshot(path=str(shots / "timeline.png"))


def test_an_operator_cancels_a_running_run(browser: Browser, web: Served, axe: Path) -> None:
    page = _page(browser, web, "otto", axe)
    run_id = _start(page, "long")
    expect(page.locator("#run-status")).to_have_text("running")
    page.get_by_role("button", name=f"Cancel run {run_id}").click()
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Rerun", exact=True)).to_be_visible()


def test_a_20_mb_output_opens_and_jumps_to_its_end(
    browser: Browser, web: Served, axe: Path
) -> None:
    page = _page(browser, web, "otto", axe)
    _start(page, "big")
    expect(page.locator("#run-status")).to_have_text("passed", timeout=120_000)
    _chip(page, "a", "h1.t.test").click()
    expect(page.get_by_role("heading", name="cases/a/run/h1.t.test.log")).to_be_visible()
    expect(page.get_by_text("line 1 of a long output", exact=False).first).to_be_visible()
    expect(page.get_by_text("20.0 MB", exact=False)).to_be_visible()
    _check(page)
    page.get_by_role("link", name="End", exact=True).click()
    last = page.get_by_text(LAST_LINE)
    expect(last).to_be_in_viewport()
    expect(page.locator(".k-error", has_text="error: this line is red")).to_be_visible()
    page.get_by_label("Find").fill("line 123456 of")
    page.get_by_role("button", name="Find next").click()
    expect(page.locator(".hit").first).to_contain_text("line 123456 of")
    expect(page.get_by_text("Found after going on from the start")).to_be_visible()


def test_a_viewer_sees_no_run_button_and_every_page_reads_well(
    browser: Browser, web: Served, axe: Path
) -> None:
    page = _page(browser, web, "vera", axe)
    page.goto("/suites")
    expect(page.get_by_role("link", name="steps", exact=True)).to_be_visible()
    assert page.get_by_role("button", name="Run steps", exact=True).count() == 0
    assert page.get_by_role("button", name="Run", exact=True).count() == 0
    _check(page)
    for path in ("/agents", "/clusters", "/suites/steps", "/suites/broken"):
        page.goto(path)
        _check(page)
    admin = _page(browser, web, "ada", axe)
    admin.goto("/admin")
    _check(admin)
    admin.goto("/login")
    _check(admin)


# --- reading on any screen ----------------------------------------------------------------

LINES = """() => [...document.querySelectorAll('pre.output .ln')].map(l => {
    const r = l.getBoundingClientRect();
    return {top: r.top, bottom: r.bottom, height: r.height,
            no: l.querySelector('.no')?.textContent ?? '', text: l.textContent};
})"""


def _numbered_as_in_the_file(lines: list[dict[str, Any]]) -> None:
    """Each shown line's number is its line in the file ("medium line N" is line N)."""
    assert lines
    for line in lines:
        written = int(line["text"].removeprefix(line["no"]).split()[2].rstrip(","))
        assert int(line["no"]) == written, line


def test_the_output_viewer_shows_a_line_a_row_numbered_from_the_files_start(
    browser: Browser, web: Served, axe: Path, shots: Path
) -> None:
    page = _page(browser, web, "otto", axe)
    _start(page, "medium")
    expect(page.locator("#run-status")).to_have_text("passed")
    _chip(page, "a", "h1.t.test").click()
    expect(page.get_by_role("heading", name="cases/a/run/h1.t.test.log")).to_be_visible()
    lines: list[dict[str, Any]] = page.evaluate(LINES)
    height = float(page.evaluate(
        "() => parseFloat(getComputedStyle(document.querySelector('pre.output .ln')).lineHeight)"
    ))  # fmt: skip
    # one line a row: each line is one line high and the next begins where it ends
    assert all(abs(line["height"] - height) < 1 for line in lines[:200])
    assert all(abs(b["top"] - a["bottom"]) < 1 for a, b in itertools.pairwise(lines[:200]))
    on_screen = [line for line in lines if line["bottom"] <= 900]
    assert len(on_screen) >= 30  # on a 900 px screen (double-spaced, it was 18)
    _numbered_as_in_the_file(lines)
    _shot(page, shots, "output-start")
    page.get_by_role("link", name="End", exact=True).click()
    expect(page.get_by_text("End of the file.")).to_be_visible()
    at_end: list[dict[str, Any]] = page.evaluate(LINES)
    _numbered_as_in_the_file(at_end)
    assert int(at_end[-1]["no"]) == MEDIUM_LINES
    page.get_by_label("Find").fill("medium line 1234,")
    page.get_by_role("button", name="Find next").click()
    hit = page.locator("pre.output .hit").first
    expect(hit).to_contain_text("medium line 1234,")
    expect(hit.locator(".no")).to_have_text("1234")
    _numbered_as_in_the_file(page.evaluate(LINES))
    _check(page)


ROWS = """(selector) => [...document.querySelectorAll(selector)].map(tr => {
    const row = tr.getBoundingClientRect();
    const cells = [...tr.children].map(c => {
        const r = c.getBoundingClientRect();
        return {display: getComputedStyle(c).display, top: r.top, bottom: r.bottom};
    });
    const buttons = [...tr.querySelectorAll('button')].map(b => {
        const r = b.getBoundingClientRect();
        return {top: r.top, bottom: r.bottom};
    });
    return {top: row.top, bottom: row.bottom, cells, buttons};
})"""


def _lined_up(rows: list[dict[str, Any]]) -> None:
    """Every cell of a row is a table cell spanning the row; its buttons sit inside it."""
    assert rows
    for row in rows:
        for cell in row["cells"]:
            assert cell["display"] == "table-cell", row
            assert abs(cell["top"] - row["top"]) < 1 and abs(cell["bottom"] - row["bottom"]) < 1
        for button in row["buttons"]:
            assert row["top"] <= button["top"] and button["bottom"] <= row["bottom"], row


def test_the_action_cells_line_up_with_their_rows(
    browser: Browser, web: Served, axe: Path, shots: Path
) -> None:
    page = _page(browser, web, "otto", axe)
    page.goto("/suites")
    expect(page.get_by_role("button", name="Run steps", exact=True)).to_be_visible()
    suites: list[dict[str, Any]] = page.evaluate(ROWS, "table.suites tbody tr[id]")
    _lined_up(suites)
    assert sum(len(row["buttons"]) for row in suites) >= 5  # the Run buttons were measured
    admin = _page(browser, web, "ada", axe)
    admin.goto("/admin")
    users: list[dict[str, Any]] = admin.evaluate(ROWS, "section[aria-labelledby=h-users] tbody tr")
    _lined_up(users)
    assert all(len(row["buttons"]) == 3 for row in users)
    _shot(admin, shots, "admin")


def test_at_420_px_no_page_is_wider_than_the_screen(
    browser: Browser, web: Served, axe: Path, shots: Path
) -> None:
    operator = _page(browser, web, "otto", axe)
    run_id = _start(operator, "pair")  # two hosts: the widest matrix of these suites
    expect(operator.locator("#run-status")).to_have_text("passed")
    context = browser.new_context(base_url=web.url, viewport={"width": 420, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT)
    page.goto("/login")
    page.get_by_label("Name").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    paths = ["/", "/suites", "/suites/flip", "/agents", "/clusters", "/admin",
             f"/runs/{run_id}", f"/runs/{run_id}/files/cases/a/run/h2a.t.test.log"]  # fmt: skip
    for path in paths:
        page.goto(path)
        page.wait_for_load_state()
        width, header = page.evaluate(
            "() => [document.documentElement.scrollWidth,"
            " document.querySelector('header.top').getBoundingClientRect().width]"
        )
        assert (width, header) == (420, 420), path  # no sideways scrolling; the header spans it
        name = path.strip("/").replace("/", "_") or "dashboard"
        _shot(page, shots, f"420-{name}")
    context.close()
