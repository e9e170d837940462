"""Alerts: which mails the policies ask for, and mails and webhooks really
delivered to a real SMTP server (aiosmtpd) and a local HTTP receiver."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from phalanx.load.errors import DefinitionErrors
from phalanx.load.repo import find_suite
from phalanx.model import (
    AlertPolicy,
    CaseResult,
    HostResult,
    RunResult,
    StageResult,
    Status,
)
from phalanx.service.alerts import Alerts, SmtpSettings, plan, send
from phalanx.service.ca import init_ca, issue, server_context

PUBLIC = "https://phalanx.example/"
TEAM = ("qa@example.org", "dev@example.org")


@dataclass(frozen=True)
class Rules:
    alert_emails: tuple[str, ...] = TEAM
    alert_success: AlertPolicy = AlertPolicy.SUITE
    alert_failure: AlertPolicy = AlertPolicy.CASE
    webhooks: tuple[str, ...] = field(default_factory=tuple)


def case(name: str, status: Status, reason: str | None = None) -> CaseResult:
    host = HostResult(host="srv1.t.test", status=status, exit_code=0 if status.ok else 1,
                      reason=reason)  # fmt: skip
    return CaseResult(name=name, status=status, stages=[StageResult(name="run", status=status,
                                                                     hosts=[host])])  # fmt: skip


def run(status: Status, *cases: CaseResult) -> RunResult:
    return RunResult(
        run_id="20240501-030000-nightly",
        suite="nightly",
        status=status,
        cluster="pair",
        cases=list(cases),
        started_at=datetime(2024, 5, 1, 3, 0, tzinfo=UTC),
        ended_at=datetime(2024, 5, 1, 3, 2, 5, tzinfo=UTC),
    )


RED_RUN = run(
    Status.FAILED,
    case("greet", Status.PASSED),
    case("compare", Status.FAILED, "expected <ok> & got <bad>"),
    case("slow", Status.TIMEOUT, "killed after 60 s"),
    case("later", Status.SKIPPED),
    case("never", Status.CANCELLED),
)
GREEN_RUN = run(Status.PASSED, case("greet", Status.PASSED), case("other", Status.PASSED))


# --- the policies -----------------------------------------------------------------


def abouts(alerts: Alerts) -> list[str]:
    return [m.about for m in alerts.mails]


def test_the_default_policies_mail_the_run_and_each_failing_case() -> None:
    assert abouts(plan(RED_RUN, Rules(), public_url=PUBLIC)) == ["suite", "compare", "slow"]
    assert abouts(plan(GREEN_RUN, Rules(), public_url=PUBLIC)) == ["suite"]


def test_suite_sends_only_the_runs_mail_and_none_sends_nothing() -> None:
    suite_only = Rules(alert_failure=AlertPolicy.SUITE)
    assert abouts(plan(RED_RUN, suite_only, public_url=PUBLIC)) == ["suite"]
    silent = Rules(alert_success=AlertPolicy.NONE, alert_failure=AlertPolicy.NONE)
    assert plan(RED_RUN, silent, public_url=PUBLIC).mails == ()
    assert plan(GREEN_RUN, silent, public_url=PUBLIC).mails == ()
    # success NONE, failure CASE: a green run is quiet, a red one is not
    quiet_when_green = Rules(alert_success=AlertPolicy.NONE)
    assert plan(GREEN_RUN, quiet_when_green, public_url=PUBLIC).mails == ()
    assert abouts(plan(RED_RUN, quiet_when_green, public_url=PUBLIC)) == [
        "suite",
        "compare",
        "slow",
    ]


def test_case_on_success_mails_each_passed_case() -> None:
    chatty = Rules(alert_success=AlertPolicy.CASE, alert_failure=AlertPolicy.SUITE)
    assert abouts(plan(GREEN_RUN, chatty, public_url=PUBLIC)) == ["suite", "greet", "other"]
    # in a red run the passed case is mailed by the success policy, the run by the failure one
    assert abouts(plan(RED_RUN, chatty, public_url=PUBLIC)) == ["suite", "greet"]


def test_without_addresses_there_is_no_mail_and_webhooks_get_every_run() -> None:
    rules = Rules(alert_emails=(), alert_failure=AlertPolicy.NONE,
                  webhooks=("http://127.0.0.1:9/hook",))  # fmt: skip
    alerts = plan(RED_RUN, rules, public_url=PUBLIC)
    assert alerts.mails == ()
    (hook,) = alerts.webhooks
    assert hook.payload["url"] == "https://phalanx.example/runs/20240501-030000-nightly"
    assert hook.payload["counts"] == {"passed": 1, "failed": 1, "timeout": 1, "skipped": 1,
                                      "cancelled": 1}  # fmt: skip
    assert [f["name"] for f in hook.payload["failing"]] == ["compare", "slow", "never"]


def test_the_mail_says_what_failed_and_links_the_run() -> None:
    alerts = plan(RED_RUN, Rules(), public_url=PUBLIC)
    suite_mail, compare_mail, _ = alerts.mails
    assert suite_mail.subject == "[phalanx] nightly: failed - 3 of 5 cases not passed"
    link = "https://phalanx.example/runs/20240501-030000-nightly"
    for text in (suite_mail.text, suite_mail.html):
        assert link in text and "compare" in text and "slow" in text and "greet" not in text
    assert "expected <ok> & got <bad>" in suite_mail.text
    assert "expected &lt;ok&gt; &amp; got &lt;bad&gt;" in suite_mail.html
    assert "<ok>" not in suite_mail.html
    assert compare_mail.subject == "[phalanx] nightly / compare: failed"
    assert "run on srv1.t.test: failed" in compare_mail.text and "slow" not in compare_mail.text


def test_a_suite_lists_its_webhooks_and_a_bad_one_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "clusters").mkdir()
    (tmp_path / "clusters" / "pair.yaml").write_text("name: pair\nhosts: [{name: srv1.t.test}]\n")
    folder = tmp_path / "test-suites" / "s"
    (folder / "tc" / "a").mkdir(parents=True)
    (folder / "tc" / "a" / "run.sh").write_text("true\n")
    (folder / "suite.yaml").write_text(
        "cluster: pair\ntests: [a]\nwebhooks: [https://chat.example/hooks/T1/B2/xyz]\n"
    )
    assert find_suite(folder).webhooks == ("https://chat.example/hooks/T1/B2/xyz",)
    (folder / "suite.yaml").write_text(
        "cluster: pair\ntests: [a]\nwebhooks:\n  - https://ok.example/x\n  - ftp://files.example/x\n"
    )
    with pytest.raises(DefinitionErrors) as caught:
        find_suite(folder)
    (error,) = caught.value.errors
    assert (error.file, error.line, error.key) == (folder / "suite.yaml", 3, "webhooks")
    assert "'ftp://files.example/x' is not an http(s) URL" in error.message


# --- a real SMTP server ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        found = []
        for envelope in self.envelopes:
            content = envelope.content
            assert isinstance(content, bytes)
            parsed = email.message_from_bytes(content, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
        return found


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    server = Controller(handler, hostname="127.0.0.1", port=port)
    server.start()
    try:
        yield handler, port
    finally:
        server.stop()


async def test_mails_arrive_at_a_real_smtp_server(inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    alerts = plan(RED_RUN, Rules(), public_url=PUBLIC)
    smtp = SmtpSettings(host="127.0.0.1", port=port, sender="phalanx@ci.example")
    deliveries = await send(alerts, smtp)
    assert [(d.channel, d.about, d.ok) for d in deliveries] == [
        ("email", "suite", True), ("email", "compare", True), ("email", "slow", True)
    ]  # fmt: skip
    assert [sorted(e.rcpt_tos) for e in handler.envelopes] == [sorted(TEAM)] * 3
    assert {e.mail_from for e in handler.envelopes} == {"phalanx@ci.example"}
    first, second, _ = handler.messages()
    assert first["Subject"] == "[phalanx] nightly: failed - 3 of 5 cases not passed"
    assert first["To"] == "qa@example.org, dev@example.org"
    assert first["Auto-Submitted"] == "auto-generated"
    text = first.get_body(("plain",))
    html = first.get_body(("html",))
    assert text is not None and html is not None
    link = "https://phalanx.example/runs/20240501-030000-nightly"
    assert link in text.get_content() and "compare" in text.get_content()
    assert f'<a href="{link}">' in html.get_content()
    assert "slow" in html.get_content() and "killed after 60 s" in html.get_content()
    assert second["Subject"] == "[phalanx] nightly / compare: failed"


async def test_mail_over_starttls_with_a_login(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca")
    made = issue(tmp_path / "ca", "127.0.0.1")
    logins: list[tuple[bytes, bytes]] = []

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"s3cret")

    handler = Inbox()
    port = free_port()
    server = Controller(
        handler, hostname="127.0.0.1", port=port, tls_context=server_context(made.cert, made.key),
        require_starttls=True, authenticator=authenticate, auth_required=True,
    )  # fmt: skip
    server.start()
    try:
        alerts = plan(GREEN_RUN, Rules(), public_url=PUBLIC)
        smtp = SmtpSettings(host="127.0.0.1", port=port, starttls=True, user="bot",
                            password="s3cret", ca_file=tmp_path / "ca" / "ca.pem")  # fmt: skip
        assert "s3cret" not in repr(smtp)
        (delivery,) = await send(alerts, smtp)
        assert delivery.ok, delivery.error
        (message,) = handler.messages()
        assert message["Subject"] == "[phalanx] nightly: passed - 2 passed"
        assert logins == [(b"bot", b"s3cret")]

        # a wrong password is an error on the delivery, not an exception
        wrong = SmtpSettings(host="127.0.0.1", port=port, starttls=True, user="bot",
                             password="guess", ca_file=tmp_path / "ca" / "ca.pem",
                             timeout=2)  # fmt: skip
        (refused,) = await send(alerts, wrong)
        assert not refused.ok and "guess" not in (refused.error or "")
        assert (refused.error or "").startswith("login to 127.0.0.1")
    finally:
        server.stop()


async def test_a_dead_mail_server_gives_errors_not_exceptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there
    alerts = plan(RED_RUN, Rules(), public_url=PUBLIC)
    deliveries = await send(alerts, SmtpSettings(host="127.0.0.1", port=port, timeout=5,
                                                 password="hunter2", user="u"))  # fmt: skip
    assert len(deliveries) == 3 and not any(d.ok for d in deliveries)
    assert all(f"cannot reach 127.0.0.1:{port}" in (d.error or "") for d in deliveries)
    assert "not sent" in caplog.text and "hunter2" not in caplog.text
    # and with no server configured at all
    (unsent, *_) = await send(alerts, None)
    assert unsent.error == "no SMTP server is configured ([smtp] host)"


# --- a real HTTP receiver -----------------------------------------------------------


class Receiver:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(500 if self.path.startswith("/broken") else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    made.thread.start()
    try:
        yield made
    finally:
        made.server.shutdown()
        made.server.server_close()
        made.thread.join(timeout=10)


async def test_a_webhook_gets_the_runs_json(receiver: Receiver) -> None:
    rules = Rules(alert_emails=(), webhooks=(f"{receiver.url}/hooks/T1/secret-token",))
    (delivery,) = await send(plan(RED_RUN, rules, public_url=PUBLIC), None)
    assert delivery.ok and delivery.channel == "webhook"
    assert "secret-token" not in delivery.target
    ((path, headers, body),) = receiver.calls
    assert path == "/hooks/T1/secret-token"
    assert headers["Content-Type"] == "application/json"
    assert body["run_id"] == "20240501-030000-nightly" and body["suite"] == "nightly"
    assert (body["status"], body["reason"]) == ("failed", None)
    assert body["url"] == "https://phalanx.example/runs/20240501-030000-nightly"
    assert body["counts"]["failed"] == 1 and body["counts"]["passed"] == 1
    compare = next(f for f in body["failing"] if f["name"] == "compare")
    assert compare == {
        "name": "compare",
        "status": "failed",
        "reason": "run on srv1.t.test: failed (expected <ok> & got <bad>)",
    }


async def test_a_failing_webhook_is_tried_twice_and_reported(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hooks/dead-token"
    rules = Rules(alert_emails=(), webhooks=(f"{receiver.url}/broken/secret-token", dead,
                                             f"{receiver.url}/fine"))  # fmt: skip
    broken, refused, fine = await send(plan(GREEN_RUN, rules, public_url=PUBLIC), None,
                                       retry_delay=0.05)  # fmt: skip
    assert not broken.ok and broken.error == "HTTP 500 Internal Server Error (after 2 tries)"
    assert [p for p, _, _ in receiver.calls].count("/broken/secret-token") == 2
    assert not refused.ok and (refused.error or "").startswith("ConnectError")
    assert fine.ok
    assert "secret-token" not in caplog.text and "dead-token" not in caplog.text
    assert "not delivered" in caplog.text
