"""``newsletter inbound poll``: a bounce mailbox read over IMAP and POP3 from a real Dovecot.

The reports quote mail our dispatch really sent (tests/support/inbound.World) and are put into
the account's Maildir as local delivery would; the poller logs in over the network like it does
with a hosted mailbox.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import select

from newsletter.inbound.poller import MailboxError, Round, parse_url, poll
from newsletter.inbound.processing import Result
from newsletter.settings import Settings
from newsletter.store.db import session_scope
from newsletter.store.models import DeliveryStatus, SubscriberStatus, Suppression
from tests.support.dovecot import PASSWORD, Mailbox, dovecot
from tests.support.inbound import BOB, World, command_env, postfix_bounce, sending, snapshot
from tests.support.smtp import SMTPSink, free_port
from tests.support.worker import NEWSLETTER


@pytest.fixture
def settings(settings: Settings, smtp_sink: SMTPSink) -> Settings:
    """conftest's settings sending to the sink with a VERP bounce address."""
    return sending(settings, smtp_sink)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """A private Dovecot with one empty bounce mailbox."""
    with dovecot() as box:
        yield box


def run(settings: Settings, url: str, *, database_url: str = "", keep: bool = False) -> Round:
    """One poll of ``url`` against the test database (or another)."""
    target = database_url or settings.database_url
    return poll(settings, lambda: session_scope(target), url, keep=keep, timeout=10)


@pytest.mark.parametrize("scheme", ["imap", "pop3"])
def test_a_poll_processes_each_waiting_message_then_removes_it(
    world: World, mailbox: Mailbox, scheme: str
) -> None:
    issue_id = world.send()
    mailbox.deliver(postfix_bounce(world, BOB, issue_id))
    mailbox.deliver(b"Subject: a newsletter reply\r\n\r\nThanks, great issue!\r\n")

    done = run(world.settings, mailbox.url(scheme))

    assert [o.result for o in done.outcomes] == [Result.BOUNCED, Result.UNKNOWN]
    assert not done.deferred and done.left == 0
    assert world.delivery(BOB, issue_id).status == DeliveryStatus.BOUNCED
    assert world.reader(BOB).status == SubscriberStatus.BOUNCED
    assert world.db.scalar(select(Suppression.reason)) == "bounce"
    assert mailbox.count() == 0
    # Nothing is left to do: the next poll processes nothing.
    assert run(world.settings, mailbox.url(scheme)).outcomes == []


def test_keep_flags_processed_mail_as_read_and_leaves_it(world: World, mailbox: Mailbox) -> None:
    issue_id = world.send()
    mailbox.deliver(postfix_bounce(world, BOB, issue_id))

    first = run(world.settings, mailbox.url("imap"), keep=True)

    assert [o.result for o in first.outcomes] == [Result.BOUNCED]
    assert mailbox.count() == 1 and mailbox.seen() == 1
    state = snapshot(world.db)
    assert run(world.settings, mailbox.url("imap"), keep=True).outcomes == []
    assert snapshot(world.db) == state
    with pytest.raises(MailboxError, match="IMAP only"):
        run(world.settings, mailbox.url("pop3"), keep=True)


@pytest.mark.parametrize("scheme", ["imap", "pop3"])
def test_a_database_outage_leaves_the_mail_for_the_next_poll(
    world: World, mailbox: Mailbox, scheme: str
) -> None:
    issue_id = world.send()
    mailbox.deliver(postfix_bounce(world, BOB, issue_id))
    away = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"

    deferred = run(world.settings, mailbox.url(scheme), database_url=away)

    assert deferred.deferred and deferred.left == 1 and deferred.outcomes == []
    assert mailbox.count() == 1
    assert world.delivery(BOB, issue_id).status == DeliveryStatus.SENT
    back = run(world.settings, mailbox.url(scheme))
    assert [o.result for o in back.outcomes] == [Result.BOUNCED]
    assert mailbox.count() == 0


def test_an_oversized_message_is_refused_unread_and_removed(world: World, mailbox: Mailbox) -> None:
    mailbox.deliver(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 100)
    small = replace(world.settings, inbound_max_bytes=4096)

    done = run(small, mailbox.url("imap"))

    assert [(o.result, o.limit) for o in done.outcomes] == [(Result.REFUSED, "size")]
    assert mailbox.count() == 0


def test_a_wrong_password_is_a_clear_error_that_never_shows_the_password(
    world: World, mailbox: Mailbox
) -> None:
    for scheme in ("imap", "pop3"):
        with pytest.raises(MailboxError) as caught:
            run(world.settings, mailbox.url(scheme, password="wrong-secret-42"))
        assert "wrong-secret-42" not in str(caught.value) and PASSWORD not in str(caught.value)
        assert str(caught.value).startswith(f"{scheme}://bounces%40news.example.com@127.0.0.1:")
    with pytest.raises(MailboxError, match="no folder"):
        run(world.settings, mailbox.url("imap", folder="Nope"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://u:p@host/", "starts with imaps://"),
        ("imaps://host/INBOX", "names the host, the user and the password"),
        ("imaps://u:p@host:99999/", "port"),
        ("pop3s://u:p@host/Bounces", "POP3 has one mailbox"),
    ],
)
def test_bad_mailbox_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(MailboxError, match=message):
        parse_url(url)


def test_mailbox_urls_are_read_with_percent_encoded_credentials() -> None:
    where = parse_url("imaps://bounces%40example.com:p%40ss%2Fword@imap.example.com/Bounces%20In")
    assert (where.user, where.password, where.folder) == (
        "bounces@example.com",
        "p@ss/word",
        "Bounces In",
    )
    assert where.port == 993 and "p@ss" not in where.safe
    assert parse_url("pop3://u:p@pop.example.com").port == 110


def test_the_command_polls_once_and_says_how_it_went(
    world: World, mailbox: Mailbox, settings: Settings
) -> None:
    issue_id = world.send()
    mailbox.deliver(postfix_bounce(world, BOB, issue_id))
    env = command_env(
        settings,
        NEWSLETTER_INBOUND_MAILBOX_URL=mailbox.url("pop3"),
    )

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*NEWSLETTER, "inbound", "poll", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = command()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        f"pop3://bounces%40news.example.com@127.0.0.1:{mailbox.pop3_port}#1: bounce: "
    )
    assert PASSWORD not in done.stdout + done.stderr
    assert world.delivery(BOB, issue_id).status == DeliveryStatus.BOUNCED

    wrong = command(mailbox.url("imap", password="nope"))
    assert wrong.returncode == 1 and wrong.stderr.startswith("Error: imap://")
    bad = command("ftp://x")
    assert bad.returncode == 2 and "imaps://" in bad.stderr
    assert "Traceback" not in wrong.stderr + bad.stderr


def test_the_command_keeps_polling_until_told_to_stop(
    world: World, mailbox: Mailbox, settings: Settings
) -> None:
    issue_id = world.send()
    mailbox.deliver(postfix_bounce(world, BOB, issue_id))
    env = command_env(settings)
    command = [*NEWSLETTER, "inbound", "poll", mailbox.url("imap"), "--every", "10"]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as poller:
        try:
            assert poller.stdout is not None
            first = poller.stdout.readline()  # the first round runs at once
        finally:
            poller.send_signal(signal.SIGTERM)
            poller.wait(timeout=30)
    assert ": bounce: " in first
    assert poller.returncode == 0
    assert mailbox.count() == 0
