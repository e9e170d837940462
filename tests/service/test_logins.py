"""Guessing passwords is slow and seen: after a few failures a name (and an
address) waits, longer with each failure, and not even the right password
is checked meanwhile; every sign-in, change of users and tokens and every
run started or cancelled is in an audit log admins read in the API and on
the admin page, without a secret in it."""

from __future__ import annotations

import time
from pathlib import Path

from phalanx.service.throttle import FREE_PER_ADDRESS, FREE_PER_NAME
from tests.service.test_admin import PASSWORD
from tests.service.test_serve import Served, make_repo, start, stop, user_token, wait_run
from tests.service.web.helpers import signed_in


def _login(served: Served, name: str, password: str) -> tuple[int, str | None]:
    import httpx

    with httpx.Client(base_url=served.url, timeout=30) as browser:
        answer = browser.post("/api/login", json={"name": name, "password": password})
        return answer.status_code, answer.headers.get("retry-after")


def test_wrong_passwords_slow_a_name_down_even_for_the_right_one(tmp_path: Path) -> None:
    served = start(tmp_path, make_repo(tmp_path / "defs"), tmp_path / "data")
    try:
        served.admin("user", "add", "ada", "--role", "admin", stdin=PASSWORD + "\n")
        for _ in range(FREE_PER_NAME):
            assert _login(served, "ada", "not the password") == (401, None)
        status, wait = _login(served, "ada", "not the password")
        assert status == 429 and wait == "1", (status, wait)
        # the right password, while the name waits: not even checked
        assert _login(served, "ada", PASSWORD)[0] == 429
        time.sleep(1.2)
        status, wait = _login(served, "ada", "wrong again")  # the wait doubles
        assert status == 401
        assert _login(served, "ada", PASSWORD) == (429, "2")
        time.sleep(2.2)
        assert _login(served, "ada", PASSWORD)[0] == 200  # and the count starts again
        assert _login(served, "ada", "one slip")[0] == 401

        # one address trying many names waits too
        for n in range(FREE_PER_ADDRESS - 1):
            assert _login(served, f"nobody{n}", "guess")[0] == 401, n
        assert _login(served, "someone-else", "guess")[0] == 429

        with served.client(user_token(served, "root", "admin")) as audit:
            entries = audit.get("/api/audit").json()
        actions = [(e["action"], e["target"]) for e in entries]
        assert ("login.failed", "ada") in actions and ("login.throttled", "ada") in actions
        assert ("login", "ada") in actions and ("user.add", "ada") in actions
        failed = next(e for e in entries if e["action"] == "login.failed")
        assert failed["address"] == "127.0.0.1" and failed["at"]
        assert PASSWORD not in str(entries) and "not the password" not in str(entries)
    finally:
        stop(served)


def test_the_audit_log_tells_who_did_what_and_only_admins_read_it(tmp_path: Path) -> None:
    served = start(tmp_path, make_repo(tmp_path / "defs"), tmp_path / "data")
    try:
        operator = user_token(served, "otto", "operator")  # user.add, user_token.create by cli
        served.admin("user", "add", "ada", "--role", "admin", stdin=PASSWORD + "\n")
        agent_token = served.admin("token", "create", "r1.t.test")
        served.admin("token", "revoke", "r1.t.test")
        with served.client(operator) as client:
            run = client.post("/api/suites/slow/runs").json()["id"]
            assert client.post(f"/api/runs/{run}/cancel").status_code == 202
            wait_run(client, run, ("cancelled",))
            assert client.get("/api/audit").status_code == 403  # an operator is not an admin
        with signed_in(served, "ada") as admin:
            page = admin.get("/admin").text
            entries = admin.get("/api/audit").json()
        assert 'id="audit"' in page and "run.cancel" in page and "agent_token.revoke" in page
        found = {(e["actor"], e["action"], e["target"]) for e in entries}
        assert ("otto", "run.start", run) in found
        assert ("otto", "run.cancel", run) in found
        assert ("ada", "login", "ada") in found
        cli = {e["actor"] for e in entries if e["action"] in ("user.add", "agent_token.create")}
        assert len(cli) == 1 and cli.pop().startswith("cli:")
        assert {"agent_token.create", "agent_token.revoke", "user_token.create"} <= {
            e["action"] for e in entries
        }
        text = str(entries) + page
        assert agent_token not in text and operator not in text and PASSWORD not in text
    finally:
        stop(served)
