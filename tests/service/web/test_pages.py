"""The web UI without JavaScript, as plain HTTP against a real `phalanx
serve`: every page renders for a viewer, what changes things is a POST
that needs the role for it and comes from the site itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.eventually import eventually
from tests.service.test_admin import PASSWORD
from tests.service.test_serve import Served, start, stop
from tests.service.web.helpers import (
    BIG_LINES,
    LAST_LINE,
    make_web_repo,
    run_id_of,
    signed_in,
    wait_status,
    web_service,
)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with web_service(tmp_path_factory.mktemp("web")) as served:
        yield served


@pytest.fixture(scope="module")
def finished(web: Served) -> dict[str, str]:
    """Runs that have ended: one that passed, one that failed, one with a big output."""
    ids = {}
    with signed_in(web, "otto") as client:
        for suite in ("good", "bad", "big"):
            answer = client.post(f"/suites/{suite}/run")
            assert answer.status_code == 303, answer.text
            ids[suite] = run_id_of(answer.headers["location"])
        for run_id in ids.values():
            wait_status(client, run_id, ("passed", "failed"), within=120)
    return ids


def test_a_visitor_is_sent_to_sign_in_and_a_wrong_password_is_refused(web: Served) -> None:
    with httpx.Client(base_url=web.url, timeout=30) as client:
        answer = client.get("/suites")
        assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/suites"
        form = client.get("/login?next=/suites")
        assert 'action="/login"' in form.text and 'for="login-password"' in form.text
        wrong = client.post("/login", data={"name": "vera", "password": "nope", "next": "/"})
        assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
        # the name stays filled in; the password is typed again
        assert re.search(r'<input id="login-name"[^>]* value="vera"', wrong.text)
        assert re.search(r'<input id="login-password"[^>]* autofocus', wrong.text)
        assert "phalanx_session" not in client.cookies
        right = client.post(
            "/login", data={"name": "vera", "password": PASSWORD, "next": "/suites"}
        )
        assert right.status_code == 303 and right.headers["location"] == "/suites"
        cookie = right.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert client.get("/suites").status_code == 200
        # an offsite `next` is not followed
        again = client.post(
            "/login", data={"name": "vera", "password": PASSWORD, "next": "//evil.test/"}
        )
        assert again.headers["location"] == "/"
        out = client.post("/logout")
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert client.get("/suites").status_code == 303


def test_every_page_renders_for_a_viewer(web: Served, finished: dict[str, str]) -> None:
    with signed_in(web, "vera") as client:
        dashboard = client.get("/")
        assert dashboard.status_code == 200
        assert "script-src 'self'" in dashboard.headers["content-security-policy"]
        for part in (
            "Suites",
            "Clusters",
            "Agents",
            "In progress",
            "Next scheduled",
            "Last finished",
        ):
            assert part in dashboard.text
        assert (
            finished["good"] in dashboard.text and 'sse-connect="/live/dashboard"' in dashboard.text
        )

        suites = client.get("/suites")
        assert suites.status_code == 200
        row = suites.text.split('id="suite-broken"', 1)[1]
        assert "definition error" in row.split("</tr>", 1)[0]
        assert "nowhere" in suites.text  # the definition's error, in full
        assert "idle" in suites.text.split('id="suite-good"', 1)[1].split("</tr>", 1)[0]

        history = client.get("/suites/good")
        assert history.status_code == 200 and "<svg" in history.text
        assert f'href="/runs/{finished["good"]}"' in history.text

        run = client.get(f"/runs/{finished['bad']}")
        assert run.status_code == 200
        assert re.search(r'id="run-status"[^>]*>failed<', run.text)
        assert "sse-connect" not in run.text  # an ended run is not followed
        assert f'href="/runs/{finished["bad"]}/files/junit.xml"' in run.text
        assert f'href="/runs/{finished["bad"]}/files/cases/a/run/h1.t.test.log"' in run.text
        assert 'class="timeline' in run.text and "<svg" in run.text
        assert f'href="/api/runs/{finished["bad"]}"' in run.text
        junit = client.get(f"/runs/{finished['bad']}/files/junit.xml")
        assert junit.status_code == 200 and "<testsuite" in junit.text
        assert client.get(f"/runs/{finished['bad']}/files/..%2Fphalanx.db").status_code == 404

        for page in ("/agents", "/clusters"):
            answer = client.get(page)
            assert answer.status_code == 200, page
        assert "h1.t.test" in client.get("/clusters").text
        assert client.get("/runs/nope").status_code == 404
        assert client.get("/suites/nope").status_code == 404


def test_a_viewer_sees_no_run_button_and_is_refused_what_operators_do(
    web: Served, finished: dict[str, str]
) -> None:
    with signed_in(web, "vera") as viewer, signed_in(web, "otto") as operator:
        assert 'action="/suites/good/run"' not in viewer.get("/suites").text
        assert ">Rerun<" not in viewer.get(f"/runs/{finished['bad']}").text
        assert 'action="/suites/good/run"' in operator.get("/suites").text
        assert ">Rerun failed (1)<" in operator.get(f"/runs/{finished['bad']}").text
        before = len(viewer.get("/api/runs", params={"suite": "good"}).json())
        for path in (
            "/suites/good/run",
            f"/runs/{finished['good']}/rerun",
            f"/runs/{finished['good']}/cancel",
            "/admin/users",
        ):
            refused = viewer.post(path, data={"name": "x", "role": "admin", "password": "x" * 10})
            assert refused.status_code == 403, path
            assert "vera is a viewer" in refused.text
        assert len(viewer.get("/api/runs", params={"suite": "good"}).json()) == before
        assert viewer.get("/admin").status_code == 403
        assert operator.get("/admin").status_code == 403


def test_state_changes_are_posts_from_this_site_only(web: Served, finished: dict[str, str]) -> None:
    with signed_in(web, "otto") as operator:
        before = len(operator.get("/api/runs", params={"suite": "good"}).json())
        assert operator.get("/suites/good/run").status_code in (404, 405)
        offsite = operator.post("/suites/good/run", headers={"Origin": "https://evil.test"})
        assert offsite.status_code == 403 and "another site" in offsite.text
        assert len(operator.get("/api/runs", params={"suite": "good"}).json()) == before
        same = operator.post("/suites/good/run", headers={"Origin": web.url})
        assert same.status_code == 303
        wait_status(operator, run_id_of(same.headers["location"]), ("passed",))
    with httpx.Client(base_url=web.url, timeout=30) as anonymous:
        assert anonymous.post("/suites/good/run").status_code == 401


def test_an_operator_reruns_and_cancels_from_the_pages(
    web: Served, finished: dict[str, str]
) -> None:
    with signed_in(web, "otto") as operator:
        rerun = operator.post(f"/runs/{finished['bad']}/rerun", data={"failed_only": "1"})
        assert rerun.status_code == 303
        new = run_id_of(rerun.headers["location"])
        assert operator.get(f"/api/runs/{new}").json()["trigger"] == f"rerun:{finished['bad']}"
        wait_status(operator, new, ("failed",))

        started = operator.post("/suites/long/run")
        run_id = run_id_of(started.headers["location"])
        wait_status(operator, run_id, ("running",))
        page = operator.get(f"/runs/{run_id}")
        assert f'sse-connect="/runs/{run_id}/live"' in page.text
        assert f'action="/runs/{run_id}/cancel"' in page.text
        cancel = operator.post(f"/runs/{run_id}/cancel", data={"back": f"/runs/{run_id}"})
        assert cancel.status_code == 303 and cancel.headers["location"] == f"/runs/{run_id}"
        assert wait_status(operator, run_id, ("cancelled",)) == "cancelled"


def test_the_run_page_streams_its_changes_until_the_run_ends(web: Served) -> None:
    with signed_in(web, "otto") as operator:
        run_id = run_id_of(operator.post("/suites/steps/run").headers["location"])
        events = []
        with operator.stream("GET", f"/runs/{run_id}/live", timeout=60) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    events.append(line.removeprefix("event: "))
        assert events[-1] == "end" and events.count("live") >= 2
        assert wait_status(operator, run_id, ("passed",)) == "passed"


def test_the_output_viewer_pages_through_a_big_output(
    web: Served, finished: dict[str, str]
) -> None:
    run_id = finished["big"]
    base = f"/runs/{run_id}/files/cases/a/run/h1.t.test.log"
    by_name = f"/runs/{run_id}/output?stage=run&host=h1.t.test&case=a"
    with signed_in(web, "vera") as client:
        assert client.get(by_name).headers["location"] == base
        first = client.get(base)
        assert first.status_code == 200
        assert "line 1 of a long output" in first.text and LAST_LINE not in first.text
        assert len(first.content) < 1024 * 1024  # one page, not the 20 MB
        end = client.get(base + "?at=end")
        assert LAST_LINE in end.text and 'id="output-end"' in end.text
        # numbered as from the file's start, after End as after Find
        no = '<span class="no" aria-hidden="true">{}</span>'
        assert f'class="ln k-warning">{no.format(BIG_LINES + 1)}warning: nearly done' in end.text
        assert f'class="ln k-error">{no.format(BIG_LINES + 2)}error: this line is red' in end.text
        assert f'class="ln">{no.format(BIG_LINES + 3)}{LAST_LINE}</span></pre>' in end.text
        found = client.get(base + "?q=line%20200000%20of&find=1&offset=0")
        assert f'class="ln hit">{no.format(200000)}line 200000 of' in found.text
        # one line each: no newline between the lines' blocks to show as an empty line
        assert "</span>\n<span" not in found.text.split('<pre class="output"', 1)[1]
        nowhere = client.get(base + "?q=no-such-words&find=1&offset=0")
        assert "is not in this output" in nowhere.text
        wrapped = client.get(base + "?q=line%20200000%20of&find=1&offset=20000000")
        assert f'class="ln hit">{no.format(200000)}line 200000 of' in wrapped.text
        assert "from the start" in wrapped.text
        raw = client.get(base + "?raw=1")
        assert raw.status_code == 200 and raw.text.endswith(LAST_LINE + "\n")
        assert raw.headers["content-type"].startswith("text/plain")
        assert raw.headers["x-content-type-options"] == "nosniff"
        assert client.get(f"/runs/{run_id}/files/..%2F..%2Fphalanx.db").status_code == 404
        assert client.get(f"/runs/{run_id}/files/cases/a/run/nope.log").status_code == 404


def test_an_admin_adds_a_user_and_makes_tokens(web: Served) -> None:
    with signed_in(web, "ada") as admin:
        page = admin.get("/admin")
        assert page.status_code == 200 and "vera" in page.text and "otto" in page.text
        added = admin.post(
            "/admin/users", data={"name": "nina", "role": "viewer", "password": PASSWORD}
        )
        assert added.status_code == 303
        made = admin.post("/admin/users/nina/token")
        token = re.search(r"(phx_user_[A-Za-z0-9_-]+)", made.text)
        assert token is not None
        with web.client(token.group(1)) as nina:
            assert nina.get("/api/suites").status_code == 200
        agent = admin.post("/admin/agents", data={"name": "r9.t.test"})
        assert re.search(r"phx_agent_[A-Za-z0-9_-]+", agent.text)
        assert admin.post("/admin/users/nina/remove").status_code == 303
        after = admin.get("/admin").text
        # gone from the users (the audit log below them keeps what happened)
        assert 'action="/admin/users/nina/remove"' not in after
        assert "user.remove" in after


def test_while_a_run_goes_its_pages_show_the_stage_and_the_output_so_far(web: Served) -> None:
    with signed_in(web, "vera") as viewer, signed_in(web, "otto") as operator:
        run_id = run_id_of(operator.post("/suites/chatty/run").headers["location"])

        def ticked() -> str | None:
            page = viewer.get(f"/runs/{run_id}").text
            if 'id="outputs"' in page and "tick 3" in page.split('id="outputs"', 1)[1]:
                return page
            return None

        page = eventually(ticked, within=60, what="the run page with 'tick 3' in its output")
        outputs = page.split('data-host="h1.t.test"', 1)
        assert len(outputs) == 2 and "tick" in page.split('id="outputs"', 1)[1]
        chip = re.search(r'data-stage="run" data-status="(\w+)"', page.split('data-case="a"')[1])
        assert chip is not None and chip.group(1) == "running"
        agents = viewer.get("/agents").text.split('id="agent-h1.t.test"', 1)[1].split("</tr>")[0]
        assert "connected" in agents and f'href="/runs/{run_id}">a/run<' in agents
        whole = viewer.get("/").text
        dashboard = whole.split('id="h-progress"', 1)[1]
        assert run_id in dashboard and "a/run" in dashboard.split("</table>")[0]
        assert '<a href="/suites/chatty">chatty</a>' in dashboard.split("</table>")[0]
        # the running suite's tile is coloured as running, not grey as the idle ones
        assert re.search(r'<li class="tile st-running">\s*<a href="/suites/chatty">', whole)
        assert 'class="state state-running">running<' in viewer.get("/suites").text
        assert wait_status(viewer, run_id, ("passed",)) == "passed"


def test_the_pages_assets_are_served_from_the_package(web: Served) -> None:
    with httpx.Client(base_url=web.url, timeout=30) as anonymous:
        for name in ("htmx.min.js", "htmx-ext-sse.min.js", "phalanx.css"):
            answer = anonymous.get(f"/static/{name}")
            assert answer.status_code == 200 and len(answer.content) > 1000, name
        page = anonymous.get("/login").text
        assert 'src="/static/htmx.min.js"' in page and "https://" not in page  # no CDN
        assert '<link rel="icon" href="/static/favicon.svg"' in page
        for path in ("/favicon.ico", "/static/favicon.svg"):  # browsers ask for the first anyway
            icon = anonymous.get(path)
            assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
            assert icon.text.startswith("<svg")


def test_a_suites_history_charts_its_runs_and_shows_the_flaky_case(web: Served) -> None:
    with signed_in(web, "otto") as operator:
        ids = []
        for _ in range(3):
            ids.append(run_id_of(operator.post("/suites/flip/run").headers["location"]))
            wait_status(operator, ids[-1], ("passed", "failed"))
        page = operator.get("/suites/flip").text
    assert [s for s in re.findall(r'<svg class="chart"', page)] == ['<svg class="chart"'] * 2
    bars = re.findall(r'<rect class="st-(\w+)"', page)
    assert bars == ["passed", "failed", "passed"]  # oldest left
    assert "flaky: a" in page
    row_a = page.split('<tr class="flaky">', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r"cell st-(\w+)", row_a) == ["passed", "failed", "passed"]
    assert page.count('class="flaky"') == 1  # b is steady
    # a sign beside the colour, for whoever does not tell red from green
    assert re.findall(r'<span aria-hidden="true">(.)</span>', row_a) == ["✓", "✗", "✓"]
    assert "✓ passed · ✗ failed" in page  # the key
    # the duration chart has axes: seconds up the side, run numbers along the bottom
    duration = page.split('<svg class="chart"')[2]
    assert ">0 s</text>" in duration and duration.count('class="axis"') == 2
    assert re.findall(r'text-anchor="middle">(\d+)<', duration) == ["1", "2", "3"]
    # the suite's own runs table does not repeat the suite on every row
    recent = page.split('id="h-runs"', 1)[1]
    assert '<th scope="col">Suite</th>' not in recent and 'href="/suites/flip"' not in recent


def test_a_suites_history_and_an_ended_runs_page_follow_each_run_that_ends(web: Served) -> None:
    """Both are kept in memory once made (service/caches.py): a run that
    ends is on the suite's page (within the second a page may lag), and an
    ended run's page and document read the same every time."""
    with signed_in(web, "otto") as operator:
        ids: list[str] = []
        for n in (1, 2):
            ids.append(run_id_of(operator.post("/suites/flip/run").headers["location"]))
            wait_status(operator, ids[-1], ("passed", "failed"))

            def shown(count: int = n) -> str | None:
                page = operator.get("/suites/flip").text
                history = page.split('id="h-history"', 1)[1].split('id="h-runs"', 1)[0]
                linked = re.findall(r'<th scope="col"><a href="/runs/([^"]+)"', history)
                # The oldest left; other tests' runs of the suite may come before.
                return page if linked[-count:] == ids[:count] else None

            eventually(shown, within=10, what=f"run {n} in the suite's history")
        first = [operator.get(f"/runs/{ids[0]}").text for _ in range(2)]
        assert first[0] == first[1] and ids[0] in first[0]
        documents = [operator.get(f"/api/runs/{ids[0]}").json() for _ in range(2)]
        assert documents[0] == documents[1] and documents[0]["status"] in ("passed", "failed")


def test_with_anonymous_read_a_visitor_reads_the_pages_but_changes_nothing(
    tmp_path: Path,
) -> None:
    served = start(
        tmp_path, make_web_repo(tmp_path / "defs"), tmp_path / "data",
        env={"PHALANX_ANONYMOUS_READ": "true"},
    )  # fmt: skip
    try:
        with httpx.Client(base_url=served.url, timeout=30) as anonymous:
            for page in ("/", "/suites", "/suites/good", "/agents", "/clusters"):
                answer = anonymous.get(page)
                assert answer.status_code == 200, page
                assert "Sign in" in answer.text and 'action="/logout"' not in answer.text
            assert 'action="/suites/good/run"' not in anonymous.get("/suites").text
            assert anonymous.post("/suites/good/run").status_code == 401
            assert anonymous.get("/admin").status_code == 403
            assert anonymous.get("/api/runs").json() == []
    finally:
        stop(served)


def _hypervisor_row(client: httpx.Client, name: str) -> str:
    page = client.get("/clusters").text
    found = re.search(rf'<tr id="hypervisor-{name}">(.*?)</tr>', page, re.S)
    assert found, page
    return found.group(1)


def test_a_hypervisor_shows_on_the_dashboard_and_clusters_pages_connected_then_lost(
    web: Served, tmp_path: Path
) -> None:
    import asyncio
    import threading

    from phalanx.hypervisor.core import Measured
    from phalanx.hypervisor.daemon import HypervisorDaemon

    token = web.admin("token", "create", "hvweb", "--hypervisor")
    measured = Measured(cpus=8, ram_mb=16000, kvm=True, accel_reason="given")
    loop = asyncio.new_event_loop()
    daemon = HypervisorDaemon(web.url, "hvweb", token, tmp_path / "hv", measured=measured)
    thread = threading.Thread(target=loop.run_until_complete, args=(daemon.run(),))
    thread.start()
    try:
        with signed_in(web, "vera") as viewer:
            eventually(
                lambda: "hypervisor-hvweb" in viewer.get("/clusters").text,
                within=30,
                what="hvweb on the clusters page",
            )
            row = _hypervisor_row(viewer, "hvweb")
            assert 'class="badge st-passed">connected' in row
            assert "8 CPUs · 16000 of 16000 MB free · KVM" in row
            tile = viewer.get("/").text.split('id="h-hypervisors"', 1)[1].split("</section>")[0]
            assert "hvweb" in tile and "tile st-passed" in tile
            listed = {h["name"]: h for h in viewer.get("/api/hypervisors").json()}
            assert listed["hvweb"]["connected"] is True
            assert (listed["hvweb"]["cpus"], listed["hvweb"]["free_mb"]) == (8, 16000)
            loop.call_soon_threadsafe(daemon.stop)
            thread.join(30)
            # gone without coming back: lost once the heartbeat timeout has passed
            row = eventually(
                lambda: _containing(_hypervisor_row(viewer, "hvweb"), "lost"),
                within=40,
                what="hvweb lost",
            )
            assert 'class="badge st-failed">lost' in row and "disconnected for" in row
            tile = viewer.get("/").text.split('id="h-hypervisors"', 1)[1].split("</section>")[0]
            assert "tile st-failed" in tile
    finally:
        if thread.is_alive():
            loop.call_soon_threadsafe(daemon.stop)
            thread.join(30)
        loop.close()


def test_a_run_waiting_for_its_agents_says_waiting_and_an_unused_cluster_no_runs(
    web: Served,
) -> None:
    with signed_in(web, "vera") as viewer, signed_in(web, "otto") as operator:
        tiles = viewer.get("/").text.split('id="h-clusters"', 1)[1].split("</section>")[0]
        two = tiles.split('href="/clusters#cluster-two"', 1)[1].split("</li>")[0]
        assert "no runs yet" in two and "of last 0" not in tiles
        run_id = run_id_of(operator.post("/suites/far/run").headers["location"])
        page = eventually(
            lambda: _containing(viewer.get(f"/runs/{run_id}").text, "waiting for agents"),
            within=30,
            what="the run page says it waits for agents",
        )
        # no agent of its cluster is connected: nothing runs yet, and it says so
        assert '<span id="run-status" class="badge st-waiting">waiting</span>' in page
        suites = viewer.get("/suites").text.split('id="suite-far"', 1)[1].split("</tr>")[0]
        if viewer.get(f"/api/runs/{run_id}").json()["status"] == "running":  # still, so then too
            assert 'class="state state-waiting">waiting<' in suites
        progress = viewer.get("/").text.split('id="h-progress"', 1)[1].split("</table>")[0]
        if run_id in progress:  # unless the connect timeout (4 s here) ended it meanwhile
            assert 'class="badge st-waiting">waiting<' in progress
        assert wait_status(viewer, run_id, ("error",), within=60) == "error"


def test_the_run_page_shows_a_failed_checks_window(web: Served) -> None:
    with signed_in(web, "otto") as client:
        answer = client.post("/suites/stale/run")
        assert answer.status_code == 303, answer.text
        run_id = run_id_of(answer.headers["location"])
        assert wait_status(client, run_id, ("passed", "failed")) == "failed"
        page = client.get(f"/runs/{run_id}").text
    section = page.split('id="histories"', 1)[1]
    assert "check register: history not linearizable on key x" in section
    window = section.split('aria-label="window of key x"', 1)[1].split("</svg>", 1)[0]
    assert "write 2" in window and "read → 1" in window, window
    assert f'href="/runs/{run_id}/files/cases/a/history.jsonl"' in section


def _containing(text: str, wanted: str) -> str | None:
    return text if wanted in text else None
