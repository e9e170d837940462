"""Alerts after a run: mails to the suite's `alert_emails`, JSON to its `webhooks`.

What is sent (`plan`, pure) follows XrdTest's policies. A run's outcome is a
success when its status is passed or skipped, a failure otherwise; a case's
likewise. `alert_success` applies to successes, `alert_failure` to failures:

- `SUITE`: one mail about the run (status, counts, the cases that did not
  pass and why, a link to the run).
- `CASE`: that mail, and one more per case of that outcome that ran to a
  verdict: with `alert_failure: CASE` one per failed, error or timed-out
  case; with `alert_success: CASE` one per passed case. Skipped and
  cancelled cases get no mail of their own (they are in the suite's): a
  cancelled run would otherwise mail once per case it never ran.
- `NONE`: no mail.

The defaults (SUITE for success, CASE for failure) thus send one mail for a
green run, and for a red one the run's mail plus one per failing case. Each
mail goes to every address of `alert_emails`, in text and HTML. Webhooks get
one JSON POST per finished run whatever the policies (they govern mail
volume, as in XrdTest; a receiver filters on `status`).

Sending (`send`) never raises because of a mail server or a receiver: it
returns one `Delivery` per mail and per webhook (ok, or the error), for the
run's record, and logs a warning for each failure. No password, and no
webhook path or query (which often is the secret), appears in a log or a
`Delivery`. A webhook is tried at most twice (again only after a connection
failure, a 5xx or a 429).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

from phalanx.model import AlertPolicy, CaseResult, RunResult, Status, seconds
from phalanx.report.outcomes import RED, entries, problems

if TYPE_CHECKING:
    import httpx
    import jinja2

log = logging.getLogger(__name__)

# Cases that ran to a verdict, by outcome: only these get a mail of their own.
CASE_FAILURES = frozenset({Status.FAILED, Status.ERROR, Status.TIMEOUT})
CASE_SUCCESSES = frozenset({Status.PASSED})
# Case statuses in the order a summary lists them.
SUMMARY_ORDER = (
    Status.PASSED,
    Status.FAILED,
    Status.ERROR,
    Status.TIMEOUT,
    Status.SKIPPED,
    Status.CANCELLED,
    Status.PENDING,
    Status.RUNNING,
)
WEBHOOK_TRIES = 2
WEBHOOK_RETRY_DELAY = 1.0


class AlertRules(Protocol):
    """What a suite says about its alerts (a `model.Suite` is one)."""

    @property
    def alert_emails(self) -> tuple[str, ...]: ...
    @property
    def alert_success(self) -> AlertPolicy: ...
    @property
    def alert_failure(self) -> AlertPolicy: ...
    @property
    def webhooks(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    starttls: bool = False  # upgrade the connection with STARTTLS (required when set)
    tls: bool = False  # TLS from the first byte (port 465)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "phalanx@localhost"
    timeout: float = 30.0  # per SMTP command
    ca_file: Path | None = None  # trust this CA for the server's certificate (else the system's)


@dataclass(frozen=True)
class Mail:
    about: str  # "suite", or the case's name
    recipients: tuple[str, ...]
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Webhook:
    url: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Alerts:
    mails: tuple[Mail, ...] = ()
    webhooks: tuple[Webhook, ...] = ()


@dataclass(frozen=True)
class Delivery:
    """How sending one alert went, to be kept with the run."""

    channel: str  # "email" or "webhook"
    target: str  # the recipients, or the webhook's origin (its path is not shown)
    about: str  # "suite" or a case name; "run" for a webhook
    ok: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "target": self.target,
            "about": self.about,
            "ok": self.ok,
            "error": self.error,
        }


# --- what to send ---------------------------------------------------------------


def wanted_policy(status: Status, rules: AlertRules) -> AlertPolicy:
    return rules.alert_success if status.ok else rules.alert_failure


def case_mail_wanted(case: CaseResult, rules: AlertRules) -> bool:
    verdicts = CASE_SUCCESSES if case.status.ok else CASE_FAILURES
    return case.status in verdicts and wanted_policy(case.status, rules) is AlertPolicy.CASE


def plan(result: RunResult, rules: AlertRules, *, public_url: str) -> Alerts:
    """The mails and webhook calls for a finished run (see the module's doc)."""
    link = run_link(public_url, result.run_id)
    mails: list[Mail] = []
    if rules.alert_emails:
        recipients = tuple(rules.alert_emails)
        if wanted_policy(result.status, rules) in (AlertPolicy.SUITE, AlertPolicy.CASE):
            mails.append(_mail(result, None, recipients, link))
        mails.extend(
            _mail(result, case, recipients, link)
            for case in result.cases
            if case_mail_wanted(case, rules)
        )
    hooks = tuple(Webhook(url, payload(result, link)) for url in rules.webhooks)
    return Alerts(tuple(mails), hooks)


def run_link(public_url: str, run_id: str) -> str:
    return f"{public_url.rstrip('/')}/runs/{quote(run_id, safe='')}"


def payload(result: RunResult, link: str) -> dict[str, Any]:
    """The JSON a webhook receives."""
    return {
        "event": "run.finished",
        "run_id": result.run_id,
        "suite": result.suite,
        "status": str(result.status),
        "reason": result.reason,
        "cluster": result.cluster,
        "started_at": _iso(result.started_at),
        "ended_at": _iso(result.ended_at),
        "counts": counts(result),
        "failing": [
            {"name": e.name, "status": str(e.status), "reason": e.message}
            for e in entries(result)
            if e.status in RED
        ],
        "url": link,
    }


def counts(result: RunResult) -> dict[str, int]:
    found = Counter(case.status for case in result.cases)
    return {str(status): found[status] for status in SUMMARY_ORDER if found[status]}


def _mail(
    result: RunResult, case: CaseResult | None, recipients: tuple[str, ...], link: str
) -> Mail:
    failing = [
        {"name": e.name, "status": str(e.status), "reason": e.message}
        for e in entries(result)
        if e.status in RED
    ]
    total = len(result.cases)
    bad = sum(1 for c in result.cases if not c.status.ok)
    if case is not None:
        subject = f"[phalanx] {result.suite} / {case.name}: {case.status}"
    elif bad:
        subject = f"[phalanx] {result.suite}: {result.status} - {bad} of {total} cases not passed"
    else:
        subject = f"[phalanx] {result.suite}: {result.status} - {_summary(result)}"
    started = result.started_at
    context = {
        "subject": subject,
        "link": link,
        "run": {
            "run_id": result.run_id,
            "suite": result.suite,
            "status": str(result.status),
            "reason": result.reason,
            "cluster": result.cluster,
            "started": started.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if started else None,
            "duration": f"{seconds(started, result.ended_at):.1f} s"
            if started and result.ended_at
            else None,
            "summary": _summary(result),
        },
        "failing": failing,
        "case": None
        if case is None
        else {
            "name": case.name,
            "status": str(case.status),
            "reason": case.reason,
            "problems": [p.describe() for p in problems(case.stages)],
        },
    }
    env = _templates()
    return Mail(
        about="suite" if case is None else case.name,
        recipients=recipients,
        subject=subject,
        text=env.get_template("alert_mail.txt").render(context),
        html=env.get_template("alert_mail.html").render(context),
    )


def _summary(result: RunResult) -> str:
    found = counts(result)
    return ", ".join(f"{n} {status}" for status, n in found.items()) or "no cases"


@cache
def _templates() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("phalanx.service", "templates"),
        # Case names, reasons and output come from the tests: escaped in HTML.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- sending --------------------------------------------------------------------


async def send(
    alerts: Alerts,
    smtp: SmtpSettings | None,
    *,
    webhook_timeout: float = 10.0,
    retry_delay: float = WEBHOOK_RETRY_DELAY,
) -> list[Delivery]:
    """Send every mail (over one SMTP connection) and call every webhook, at
    once; one `Delivery` per mail, then per webhook. Never raises for what a
    server or receiver does."""
    mails, hooks = await asyncio.gather(
        _send_mails(alerts.mails, smtp),
        _call_webhooks(alerts.webhooks, webhook_timeout, retry_delay),
    )
    return [*mails, *hooks]


def message(mail: Mail, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(mail.recipients)
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(_now_local())
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or socket.getfqdn())
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to an alert
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    return msg


async def _send_mails(mails: Sequence[Mail], smtp: SmtpSettings | None) -> list[Delivery]:
    if not mails:
        return []
    if smtp is None:
        return [_mail_failed(m, "no SMTP server is configured ([smtp] host)") for m in mails]
    import aiosmtplib

    failures = (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError)
    try:
        context = _tls_context(smtp) if smtp.tls or smtp.starttls else None
        client = aiosmtplib.SMTP(
            hostname=smtp.host,
            port=smtp.port,
            use_tls=smtp.tls,
            start_tls=smtp.starttls and not smtp.tls,
            timeout=smtp.timeout,
            tls_context=context,
        )
        await client.connect()
    except failures as exc:
        error = f"cannot reach {smtp.host}:{smtp.port}: {_describe(exc)}"
        return [_mail_failed(m, error) for m in mails]
    if smtp.user:
        try:
            await client.login(smtp.user, smtp.password or "")
        except failures as exc:
            client.close()
            error = f"login to {smtp.host}:{smtp.port} as {smtp.user} failed: {_describe(exc)}"
            return [_mail_failed(m, error) for m in mails]
    delivered: list[Delivery] = []
    try:
        for mail in mails:
            try:
                await client.send_message(message(mail, smtp.sender))
            except failures as exc:
                delivered.append(_mail_failed(mail, _describe(exc)))
            else:
                delivered.append(Delivery("email", _recipients(mail), mail.about, True))
    finally:
        try:
            await client.quit()
        except failures:
            client.close()
    return delivered


def _tls_context(smtp: SmtpSettings) -> ssl.SSLContext:
    if smtp.ca_file is not None:
        from phalanx.service.ca import client_context

        return client_context(smtp.ca_file)
    return ssl.create_default_context()


def _mail_failed(mail: Mail, error: str) -> Delivery:
    log.warning("alert mail about %s to %s not sent: %s", mail.about, _recipients(mail), error)
    return Delivery("email", _recipients(mail), mail.about, False, error)


def _recipients(mail: Mail) -> str:
    return ", ".join(mail.recipients)


async def _call_webhooks(
    hooks: Sequence[Webhook], timeout: float, retry_delay: float
) -> list[Delivery]:
    if not hooks:
        return []
    import httpx

    from phalanx import __version__

    headers = {"User-Agent": f"phalanx/{__version__}"}
    async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:
        return list(await asyncio.gather(*(_post(client, h, retry_delay) for h in hooks)))


async def _post(client: httpx.AsyncClient, hook: Webhook, retry_delay: float) -> Delivery:
    import httpx

    target = webhook_origin(hook.url)
    error = ""
    for attempt in range(1, WEBHOOK_TRIES + 1):
        try:
            response = await client.post(hook.url, json=hook.payload)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            # the exception's text may carry the URL: say only what kind of failure it was
            error, again = f"{type(exc).__name__}{_errno(exc)}", True
        else:
            if response.is_success:
                return Delivery("webhook", target, "run", True)
            code = response.status_code
            error, again = (
                f"HTTP {code} {response.reason_phrase}".strip(),
                code >= 500 or code == 429,
            )
        if not again or attempt == WEBHOOK_TRIES:
            break
        await asyncio.sleep(retry_delay)
    tries = f" (after {attempt} tries)" if attempt > 1 else ""
    log.warning("webhook %s not delivered: %s%s", target, error, tries)
    return Delivery("webhook", target, "run", False, error + tries)


def webhook_origin(url: str) -> str:
    """What a webhook may be called in logs and results: scheme, host and port."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    hidden = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{hidden}"


def _errno(exc: BaseException) -> str:
    """A connection failure's own reason (e.g. 'connection refused'), without its URL."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return f": {cause.strerror}"
        cause = cause.__cause__ or cause.__context__
    return ""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _now_local() -> datetime:
    return datetime.now().astimezone()
