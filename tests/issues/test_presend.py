"""The pre-send check: one message of an issue against the rules, before the send may start.

The service answers over a real loopback port (its one-click POST and its pages), mails go
through the real send path to an aiosmtpd sink, DKIM is signed with a real key and verified
with dkimpy, and a misbehaving endpoint is a real HTTP server that redirects.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.cli import cli
from newsletter.issues import lifecycle, presend
from newsletter.issues.rendering import clear_cache, prepare_issue
from newsletter.issues.test_sends import inert_reader
from newsletter.mail.dkim import DKIMSigner
from newsletter.mail.transport import close_transports
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import Issue, IssueStatus, NewsletterKind, Subscriber
from tests.support import dispatching as seed
from tests.support.live_app import live_app
from tests.support.smtp import SMTPSink, free_port


@pytest.fixture
def dkim_key(tmp_path: Path) -> Path:
    """A fresh RSA-2048 key in PEM, as ops would configure it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture
def service(settings: Settings, smtp_sink: SMTPSink, dkim_key: Path) -> Iterator[Settings]:
    """The service on a loopback port (also standing in for the news site), signing with DKIM,
    blocking sends whose check fails."""
    signed = replace(
        settings,
        smtp_url=smtp_sink.url,
        smtp_timeout=5.0,
        dkim_key_file=str(dkim_key),
        dkim_selector="mail",
        dkim_domain="news.example.com",
        presend_check="block",
    )
    with live_app(signed) as (_app, url):
        yield replace(signed, base_url=url, site_url=url)
    clear_cache()
    close_transports()


@pytest.fixture
def app(service: Settings) -> Iterator[Flask]:
    """An app over the service's settings with its context pushed (mails render in it)."""
    app = create_app(service)
    with app.app_context():
        yield app


def campaign(db: Session, settings: Settings, body: str = "<p>Half price this week.</p>") -> int:
    """An offer campaign to one reader; its id."""
    offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    seed.reader(db, "ana@example.com", [offers])
    issue = lifecycle.create_campaign(db, settings, offers, subject="Half price", body_html=body)
    db.commit()
    return issue.id


def findings(report: presend.Report) -> dict[str, presend.Finding]:
    """The report's findings by name."""
    return {f.name: f for f in report.findings}


def test_a_good_issue_passes_and_sends(
    app: Flask, db: Session, service: Settings, smtp_sink: SMTPSink
) -> None:
    issue_id = campaign(
        db, service, '<p>Half price. <a href="' + service.site_url + '/">Our site</a></p>'
    )

    report = presend.check_issue(db, service, issue_id)

    assert report.passed, report.summary()
    assert all(f.ok for f in report.findings), [f for f in report.findings if not f.ok]
    assert set(findings(report)) == {
        "mime",
        "template",
        "list headers",
        "unsubscribe link",
        "postal address",
        "dkim",
        "size",
        "one-click",
        "links",
    }
    # The story link and the masthead's link home, both requested.
    assert findings(report)["links"].detail == "2 link(s) to our sites answer"
    # Checking mailed nobody and unsubscribed nobody.
    assert smtp_sink.messages == []
    queue = seed.InlineQueue(service)
    issue = lifecycle.send(db, service, issue_id, queue)
    queue.drain()
    assert issue.check_override == ""
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["ana@example.com"]]
    db.expire_all()
    assert db.get(Issue, issue_id).status == IssueStatus.SENT  # type: ignore[union-attr]
    assert db.query(Subscriber).one().status == "active"


def test_a_template_without_an_unsubscribe_link_blocks_the_send(
    db: Session, service: Settings, smtp_sink: SMTPSink, tmp_path: Path
) -> None:
    overrides = tmp_path / "templates"
    (overrides / "email").mkdir(parents=True)
    for suffix in ("html", "txt"):
        (overrides / "email" / f"campaign.{suffix}").write_text(
            "{{ body_html | safe }}\n{{ postal_address }}\n"
            if suffix == "html"
            else "{{ body_text }}\n{{ postal_address }}\n"
        )
    bare = replace(service, template_dir=str(overrides))
    app = create_app(bare)
    with app.app_context():
        issue_id = campaign(db, bare)

        report = presend.check_issue(db, bare, issue_id)
        assert not report.passed
        failed = findings(report)["unsubscribe link"]
        assert not failed.ok and "has no unsubscribe link" in failed.detail
        with pytest.raises(lifecycle.CheckFailed) as refused:
            lifecycle.send(db, bare, issue_id, seed.InlineQueue(bare))
        assert "pre-send check failed: unsubscribe link: the text and HTML part" in str(
            refused.value
        )
        assert "--override-check" in str(refused.value)
        db.expire_all()
        assert db.get(Issue, issue_id).status == IssueStatus.DRAFT  # type: ignore[union-attr]

        # An override sends it, with its reason and what it overrode recorded on the issue.
        queue = seed.InlineQueue(bare)
        issue = lifecycle.send(db, bare, issue_id, queue, override="legal approved the footer")
        queue.drain()
        assert "legal approved the footer (overrode pre-send check failed" in issue.check_override
        assert len(smtp_sink.messages) == 1


def one_message(db: Session, settings: Settings, issue_id: int) -> bytes:
    """The message the check looks at, as bytes."""
    mail = prepare_issue(db, settings, issue_id).message_for(
        inert_reader("check@example.com", None)
    )
    assert mail is not None
    return mail.message


def test_a_signature_that_does_not_cover_list_unsubscribe_fails(
    app: Flask, db: Session, service: Settings
) -> None:
    raw = one_message(db, service, campaign(db, service))
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    # As when a step after signing adds the headers: strip them, sign, put them back.
    fields: list[list[bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            fields[-1].append(line)
        else:
            fields.append([line])
    unsigned = [
        f for f in fields if not f[0].lower().startswith((b"dkim-signature:", b"list-unsubscribe"))
    ]
    added = [f for f in fields if f[0].lower().startswith(b"list-unsubscribe")]
    signer = DKIMSigner.from_settings(service)
    assert signer is not None
    message = b"\r\n".join(b"\r\n".join(f) for f in unsigned) + b"\r\n\r\n" + body
    signed = signer.sign(message)
    shead, _, sbody = signed.partition(b"\r\n\r\n")
    late = shead + b"\r\n" + b"\r\n".join(b"\r\n".join(f) for f in added) + b"\r\n\r\n" + sbody

    result = {f.name: f for f in presend.check_message(service, late)}["dkim"]
    assert not result.ok and result.blocking
    assert "does not cover list-unsubscribe and list-unsubscribe-post" in result.detail

    # A header changed after signing: the signature no longer verifies.
    tampered = raw.replace(b"Subject: ", b"Subject: FREE ", 1)
    result = {f.name: f for f in presend.check_message(service, tampered)}["dkim"]
    assert not result.ok and "does not verify" in result.detail

    # Without a key it is a warning, not a block: SPF alone still authenticates.
    unsigned_settings = replace(service, dkim_key_file="", dkim_selector="", dkim_domain="")
    result = {f.name: f for f in presend.check_message(unsigned_settings, raw)}["dkim"]
    assert not result.ok and not result.blocking and "not configured" in result.detail


class _Redirecting(BaseHTTPRequestHandler):
    """Answers everything with a redirect and a cookie: what one-click must never do."""

    def _answer(self) -> None:
        self.send_response(302)
        self.send_header("Location", "https://elsewhere.example/")
        self.send_header("Set-Cookie", "session=1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def redirecting() -> Iterator[str]:
    """A real HTTP server that redirects every request; its URL."""
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


def test_a_one_click_url_that_redirects_and_a_dead_link_fail(
    db: Session, service: Settings, redirecting: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    elsewhere = replace(service, base_url=redirecting, site_url=dead)
    app = create_app(elsewhere)
    with app.app_context():
        issue_id = campaign(db, elsewhere, f'<p><a href="{dead}/story">Read</a></p>')
        result = findings(presend.check_issue(db, elsewhere, issue_id))
    assert not result["one-click"].ok
    assert result["one-click"].detail == "answers 302 with a redirect; it must be 200"
    assert not result["links"].ok
    assert result["links"].detail.startswith("2 link(s) do not answer: ")
    assert f"{dead}/story (ConnectionError)" in result["links"].detail


def test_leftover_merge_tags_and_a_clipped_size_fail(
    app: Flask, db: Session, service: Settings
) -> None:
    issue_id = campaign(db, service, "<p>Hi {{ first_name }}, " + "news " * 25_000 + "</p>")
    result = findings(presend.check_issue(db, service, issue_id))
    assert not result["template"].ok and "{{ first_name }}" in result["template"].detail
    assert not result["size"].ok and "Gmail clips past 102 kB" in result["size"].detail


def test_a_scheduled_issue_that_fails_is_held_with_the_reason(
    db: Session, service: Settings, redirecting: str
) -> None:
    broken = replace(service, base_url=redirecting)
    app = create_app(broken)
    with app.app_context():
        issue_id = campaign(db, broken)
        lifecycle.schedule(db, issue_id, utcnow())
        started = lifecycle.start_due(db, broken, seed.InlineQueue(broken))
    assert started == []
    db.expire_all()
    issue = db.get(Issue, issue_id)
    assert issue is not None and issue.held and issue.status == IssueStatus.SCHEDULED
    assert issue.status_reason.startswith("pre-send check failed: one-click: answers 302")


def test_in_warn_mode_a_failing_check_is_logged_and_the_send_goes_on(
    db: Session, service: Settings, redirecting: str, smtp_sink: SMTPSink
) -> None:
    warned = replace(service, base_url=redirecting, presend_check="warn")
    app = create_app(warned)
    with app.app_context():
        issue_id = campaign(db, warned)
        queue = seed.InlineQueue(warned)
        issue = lifecycle.send(db, warned, issue_id, queue)
        queue.drain()
    assert issue.status_reason.startswith("pre-send check failed: one-click")
    assert len(smtp_sink.messages) == 1


def test_the_command_prints_each_check_and_fails_when_one_does(
    db: Session, service: Settings, redirecting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = replace(service, base_url=redirecting)
    app = create_app(broken)
    with app.app_context():
        issue_id = campaign(db, broken)
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_"):
            monkeypatch.delenv(key)
    for name in (
        "env",
        "data_dir",
        "database_url",
        "secret_key",
        "base_url",
        "site_url",
        "dkim_key_file",
        "dkim_selector",
        "dkim_domain",
        "smtp_url",
    ):
        monkeypatch.setenv(f"NEWSLETTER_{name.upper()}", str(getattr(broken, name)))
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "")

    result = CliRunner().invoke(cli, ["issues", "check", str(issue_id)])

    assert result.exit_code == 1, result.output
    assert "FAIL  one-click" in result.output and "ok    mime" in result.output
    assert "would not be sent: 1 check(s) failed" in result.output
    missing = CliRunner().invoke(cli, ["issues", "check", "999"])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert "999" in missing.output
