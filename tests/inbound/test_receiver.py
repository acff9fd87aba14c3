"""The bounce mailbox: real SMTP and LMTP sessions against ``newsletter inbound serve``'s server.

Reports quote mail our dispatch really sent (tests/support/inbound.World); the server runs in
this process on a free port (and once as the real command in a subprocess), and what the sending
MTA is told is read off the wire.
"""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import select

from newsletter.inbound.receiver import BounceHandler, TcpMailbox, own_domains
from newsletter.settings import Settings
from newsletter.store.db import session_scope
from newsletter.store.models import DeliveryStatus, SubscriberStatus, Suppression
from tests.support.inbound import (
    ALICE,
    BOB,
    World,
    command_env,
    postfix_bounce,
    sending,
    snapshot,
)
from tests.support.smtp import SMTPSink, free_port
from tests.support.worker import NEWSLETTER


@pytest.fixture
def settings(settings: Settings, smtp_sink: SMTPSink) -> Settings:
    """conftest's settings sending to the sink with a VERP bounce address."""
    return sending(settings, smtp_sink)


def serve(settings: Settings, *, lmtp: bool = False, database_url: str = "") -> Iterator[int]:
    """Run the bounce mailbox on a free port; yields the port."""
    url = database_url or settings.database_url
    handler = BounceHandler(settings, lambda: session_scope(url), own_domains(settings), lmtp=lmtp)
    port = free_port()
    server = TcpMailbox(handler, "127.0.0.1", port, "bounces.test")
    server.start()
    try:
        yield port
    finally:
        server.stop()


@pytest.fixture
def mailbox(settings: Settings) -> Iterator[int]:
    """An SMTP bounce mailbox on the test database."""
    yield from serve(settings)


def crlf(raw: bytes) -> bytes:
    """A message with the CRLF line ends of the wire (the samples are stored with LF)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def deliver(port: int, recipient: str, raw: bytes) -> tuple[int, bytes]:
    """Hand one message over as a remote MTA does (null sender); the DATA reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("mx.example.net")
        smtp.mail("<>")
        code, text = smtp.rcpt(recipient)
        assert code == 250, text
        return smtp.data(crlf(raw))


def test_a_bounce_over_smtp_is_processed_and_the_mta_told_so(world: World, mailbox: int) -> None:
    issue_id = world.send()
    report = postfix_bounce(world, BOB, issue_id)
    verp = world.mail_to(BOB, issue_id).mail_from

    code, text = deliver(mailbox, verp, report)

    assert code == 250 and text.startswith(b"2.0.0 Processed: bounce: "), text
    assert world.delivery(BOB, issue_id).status == DeliveryStatus.BOUNCED
    assert world.reader(BOB).status == SubscriberStatus.BOUNCED
    assert world.db.scalar(select(Suppression.reason)) == "bounce"
    assert world.reader(ALICE).status == SubscriberStatus.ACTIVE
    # The MTA may hand the same message over again (a lost reply): nothing changes.
    state = snapshot(world.db)
    code, text = deliver(mailbox, verp, report)
    assert code == 250 and b"nothing changed" in text
    assert snapshot(world.db) == state


def test_mail_for_other_domains_is_refused_before_data(world: World, mailbox: int) -> None:
    with smtplib.SMTP("127.0.0.1", mailbox, timeout=30) as smtp:
        smtp.ehlo("mx.example.net")
        smtp.mail("spammer@example.net")
        code, text = smtp.rcpt("someone@elsewhere.example")
        assert code == 550 and text.startswith(b"5.1.1 No such mailbox here")
        assert b"news.example.com" in text
        # Never a relay: a look-alike subdomain is another domain.
        code, _ = smtp.rcpt("bounces@evil.news.example.com.attacker.example")
        assert code == 550


def test_junk_and_oversized_messages_are_refused_permanently(
    world: World, settings: Settings
) -> None:
    small = replace(settings, inbound_max_bytes=4096)
    for port in serve(small):
        code, text = deliver(port, "bounces@news.example.com", b"\x00\x01\x02 not mail")
        assert code == 554 and text.startswith(b"5.6.0")
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo("mx.example.net")
            smtp.mail("<>")
            smtp.rcpt("bounces@news.example.com")
            code, text = smtp.data(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 100)
            assert code == 552, text


def test_a_database_outage_defers_the_message_so_the_mta_retries(world: World) -> None:
    issue_id = world.send()
    report = postfix_bounce(world, BOB, issue_id)
    verp = world.mail_to(BOB, issue_id).mail_from
    away = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"

    for port in serve(world.settings, database_url=away):
        code, text = deliver(port, verp, report)
        assert code == 451 and text.startswith(b"4.3.0")
    assert world.delivery(BOB, issue_id).status == DeliveryStatus.SENT

    for port in serve(world.settings):  # the retry, once the database is back
        code, _ = deliver(port, verp, report)
        assert code == 250
    assert world.delivery(BOB, issue_id).status == DeliveryStatus.BOUNCED


def lmtp_session(port: int, recipients: list[str], raw: bytes) -> list[bytes]:
    """One LMTP transaction by hand (smtplib's LMTP reads one DATA reply, not one a recipient)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")

        def reply() -> list[bytes]:
            lines = [reader.readline()]
            while lines[-1][3:4] == b"-":
                lines.append(reader.readline())
            return lines

        def send(line: bytes) -> list[bytes]:
            sock.sendall(line + b"\r\n")
            return reply()

        assert reply()[0].startswith(b"220")
        assert send(b"LHLO mx.example.net")[-1].startswith(b"250 ")
        assert send(b"MAIL FROM:<>")[0].startswith(b"250")
        for recipient in recipients:
            assert send(b"RCPT TO:<" + recipient.encode() + b">")[0].startswith(b"250")
        assert send(b"DATA")[0].startswith(b"354")
        sock.sendall(crlf(raw) + b"\r\n.\r\n")
        answers = [reader.readline().rstrip(b"\r\n") for _ in recipients]
        send(b"QUIT")
        return answers


def test_lmtp_answers_data_once_per_recipient(world: World, settings: Settings) -> None:
    issue_id = world.send()
    bob_verp = world.mail_to(BOB, issue_id).mail_from
    alice_verp = world.mail_to(ALICE, issue_id).mail_from
    report = postfix_bounce(world, BOB, issue_id)

    for port in serve(settings, lmtp=True):
        answers = lmtp_session(port, [bob_verp, alice_verp], report)

    # Each recipient gets its own answer, and each VERP address is evidence for its own reader.
    assert len(answers) == 2
    assert all(a.startswith(b"250 2.0.0 Processed: bounce") for a in answers), answers
    assert world.delivery(BOB, issue_id).status == DeliveryStatus.BOUNCED
    assert world.delivery(ALICE, issue_id).status == DeliveryStatus.BOUNCED


def test_the_command_serves_until_told_to_stop(world: World, settings: Settings) -> None:
    issue_id = world.send()
    report = postfix_bounce(world, BOB, issue_id)
    verp = world.mail_to(BOB, issue_id).mail_from
    port = free_port()
    env = command_env(settings)
    command = [*NEWSLETTER, "inbound", "serve", "--listen", f"127.0.0.1:{port}"]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as server:
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    code, _ = deliver(port, verp, report)
                    break
                except OSError:
                    assert server.poll() is None, server.stderr.read() if server.stderr else ""
                    assert time.monotonic() < deadline, "the server never listened"
                    time.sleep(0.2)
        finally:
            server.send_signal(signal.SIGTERM)
            out, err = server.communicate(timeout=30)
    assert code == 250
    assert server.returncode == 0, err
    assert f"SMTP bounce mailbox on 127.0.0.1:{port} for news.example.com".encode() in err
    assert out.decode().startswith(f"{verp}: 250 2.0.0 Processed: bounce")
    assert b"Traceback" not in err
    assert world.delivery(BOB, issue_id).status == DeliveryStatus.BOUNCED


def test_the_command_refuses_a_bad_listen_address(settings: Settings) -> None:
    env = command_env(settings)
    done = subprocess.run(
        [*NEWSLETTER, "inbound", "serve", "--listen", "127.0.0.1:notaport"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and b"expected HOST:PORT" in done.stderr
