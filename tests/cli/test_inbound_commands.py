"""``newsletter inbound process``: files, maildirs, mboxes and stdin, as an MTA pipe runs it."""

from __future__ import annotations

import mailbox
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter import create_app
from newsletter.cli import cli
from newsletter.issues.rendering import envelope_sender
from newsletter.mail.transport import close_transports
from newsletter.mail.verp import verp_tag
from newsletter.readers import links
from newsletter.readers.suppression import is_suppressed
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, get_sessionmaker
from newsletter.store.models import Subscriber, SubscriberStatus
from tests.support.hostile_mail import huge_header, naming, nested, wide
from tests.support.inbound import (
    ALICE,
    BOB,
    BOUNCES,
    DATA,
    World,
    sample,
    seed_mailed,
    snapshot,
    unmatched_reports,
)
from tests.support.smtp import SMTPSink, free_port
from tests.support.worker import NEWSLETTER, base_env


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """NEWSLETTER_* for the test database, with a VERP bounce address."""
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_") or key == "ORIGINAL_RECIPIENT":
            monkeypatch.delenv(key)
    monkeypatch.setenv("NEWSLETTER_ENV", "testing")
    monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("NEWSLETTER_BOUNCE_ADDRESS", BOUNCES)
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "")
    yield replace(settings, bounce_address=BOUNCES)
    dispose_engines()


def test_command_reads_files_maildirs_and_mboxes_and_reports_each_message(
    cli_env: Settings, tmp_path: Path
) -> None:
    issue_id, bob_id, _ = seed_mailed(cli_env)
    verp = envelope_sender(cli_env, issue_id, bob_id)
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "bounce.eml").write_bytes(
        sample("postfix-4.2.2-delayed.eml", verp=verp, email=BOB, original_headers="X: y")
    )
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(sample("postfix-5.1.1.eml", verp=verp, email=BOB, original_headers="X: y"))
    maildir.add((DATA / "out-of-office.eml").read_bytes())
    box = mailbox.mbox(tmp_path / "mbox")
    bob_token = links.unsubscribe_token(cli_env, links.claim_for(bob_id, 0, BOB))
    box.add(
        sample(
            "unsubscribe-request.eml",
            to="unsubscribe@news.example.com",
            subject=f"unsubscribe-{bob_token}",
            **{"from": BOB},
        )
    )
    box.add(
        sample(
            "unsubscribe-request.eml",
            to="unsubscribe@news.example.com",
            subject="unsubscribe-WzEsMF0.forged",
            **{"from": BOB},
        )
    )
    box.close()
    paths = [
        str(inbox / "bounce.eml"),
        str(tmp_path / "Maildir"),
        str(tmp_path / "mbox"),
        str(DATA / "not-mail.txt"),
        str(tmp_path / "missing.eml"),
    ]

    result = CliRunner().invoke(cli, ["inbound", "process", *paths], catch_exceptions=False)

    lines = result.output.splitlines()
    assert result.exit_code == 1, result.output  # two inputs were not mail
    assert len(lines) == 7, result.output
    assert lines[0].startswith(f"{inbox / 'bounce.eml'}: soft-bounce: ")
    assert ": bounce: subscriber" in lines[1] and "address suppressed" in lines[1]
    assert ": unknown: not a bounce" in lines[2]
    assert lines[3].startswith(f"{tmp_path / 'mbox'}#1: unsubscribe: subscriber {bob_id} left")
    assert lines[4].startswith(f"{tmp_path / 'mbox'}#2: ignored: ") and "token" in lines[4]
    assert lines[5].startswith(f"{DATA / 'not-mail.txt'}: invalid: ")
    assert lines[6] == f"{tmp_path / 'missing.eml'}: invalid: no such file or folder"
    with get_sessionmaker(cli_env.database_url)() as db:
        assert is_suppressed(db, BOB)
        assert db.get(Subscriber, bob_id).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]

    again = CliRunner().invoke(cli, ["inbound", "process", str(tmp_path / "Maildir")])
    assert again.exit_code == 0, again.output
    assert "nothing changed" in again.output.splitlines()[0]


@pytest.fixture
def world(cli_env: Settings, smtp_sink: SMTPSink) -> Iterator[World]:
    """Readers of the command's database, and campaigns really sent to them (to the sink)."""
    sending = replace(
        cli_env, smtp_url=smtp_sink.url, smtp_timeout=5.0, autopause_min_attempts=10_000
    )
    app = create_app(sending)
    session = get_sessionmaker(sending.database_url)()
    with app.app_context():
        yield World.build(session, sending, smtp_sink)
    session.close()
    close_transports()


def stdin(recipient: str, report: bytes) -> Result:
    """``newsletter inbound process --recipient ADDRESS -`` with the report on stdin."""
    return CliRunner().invoke(
        cli, ["inbound", "process", "--recipient", recipient, "-"], input=report
    )


def test_stdin_acts_on_a_genuine_bounce_at_its_verp_address_and_on_nothing_forged(
    world: World,
) -> None:
    issue_id = world.send()
    bob_id, alice_id = world.reader(BOB).id, world.reader(ALICE).id
    # The report itself carries no VERP address: only the MTA's envelope recipient does.
    forged = sample(
        "postfix-5.1.1.eml",
        verp="postmaster@news.example.com",
        email=BOB,
        original_headers=f"Message-ID: <made-up@news.example.com>\nTo: {BOB}",
    )
    alices_tag = verp_tag(world.settings.secret_key, issue_id, alice_id)
    state = snapshot(world.db)
    for recipient in (
        "bounces@news.example.com",
        f"bounces+{issue_id}-{bob_id}@news.example.com",
        f"bounces+{issue_id}-{bob_id}-{alices_tag}@news.example.com",
    ):
        result = stdin(recipient, forged)
        assert result.exit_code == 0, result.output
        assert result.output.startswith("stdin: unmatched: bounce naming 1 address(es)"), recipient
        assert "recorded, no reader changed" in result.output
    assert snapshot(world.db) == state
    assert unmatched_reports(world.db) == 1  # one message, recorded once

    genuine = sample(
        "postfix-5.1.1.eml",
        verp="postmaster@news.example.com",
        email=BOB,
        original_headers="X-Nothing: quoted",
    )
    result = stdin(world.mail_to(BOB, issue_id).mail_from, genuine)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("stdin: bounce: ")
    assert f"issue {issue_id} marked bounced" in result.output
    assert world.reader(BOB).status == SubscriberStatus.BOUNCED
    assert is_suppressed(world.db, BOB) and not is_suppressed(world.db, ALICE)

    junk = CliRunner().invoke(cli, ["inbound", "process", "-"], input=b"\x00\x01garbage")
    assert junk.exit_code == 1
    assert junk.output.startswith("stdin: invalid: not a mail message")


def test_stdin_acts_on_a_complaint_quoting_our_message_id_and_on_nothing_forged(
    world: World,
) -> None:
    issue_id = world.send()
    mail = world.mail_to(ALICE, issue_id)
    # The provider hides our token but keeps the Message-ID and the address it went to.
    quoted = message_from_bytes(mail.data)
    del quoted["List-Unsubscribe"], quoted["List-Unsubscribe-Post"]
    copy = quoted.as_bytes().replace(b"\r\n", b"\n").decode()
    report = {
        who: sample(
            "arf-complaint.eml",
            feedback_type="abuse",
            verp="bounces@news.example.com",
            email=who,
            original_message=copy.replace(ALICE, who),
        )
        for who in (ALICE, BOB)
    }
    state = snapshot(world.db)
    forged = stdin("fbl@news.example.com", report[BOB])  # Alice's mail does not prove Bob's
    assert forged.output.startswith("stdin: unmatched: complaint naming 1 address(es)")
    assert "the Message-ID it quotes is not ours for the address it names" in forged.output
    assert snapshot(world.db) == state

    genuine = stdin("fbl@news.example.com", report[ALICE])
    assert genuine.exit_code == 0, genuine.output
    assert genuine.output.startswith(f"stdin: complaint: subscriber {world.reader(ALICE).id} ")
    assert world.reader(ALICE).status == SubscriberStatus.UNSUBSCRIBED
    assert is_suppressed(world.db, ALICE) and not is_suppressed(world.db, BOB)
    again = stdin("fbl@news.example.com", report[ALICE])
    assert "nothing changed" in again.output


def test_an_mta_pipe_gets_tempfail_when_the_database_is_down(tmp_path: Path) -> None:
    env = base_env(
        NEWSLETTER_ENV="testing",
        NEWSLETTER_DATA_DIR=str(tmp_path),
        NEWSLETTER_SECRET_KEY="pipe-secret-key-that-is-long-enough-0123456789",
        NEWSLETTER_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none",
    )
    report = sample(
        "postfix-5.1.1.eml", verp="bounces+1-1@news.example.com", email=BOB, original_headers="X: y"
    )
    done = subprocess.run(
        [*NEWSLETTER, "inbound", "process"],
        input=report,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 75, done.stderr  # EX_TEMPFAIL: Postfix keeps it and retries
    assert done.stdout.decode().startswith("stdin: deferred: database problem")
    assert b"Traceback" not in done.stderr


def test_stdin_refuses_hostile_messages_with_ex_dataerr_and_stores_nothing(world: World) -> None:
    issue_id = world.send()
    verp = world.mail_to(BOB, issue_id).mail_from
    # A genuine bounce of a real delivery: within the limits it would bounce Bob.
    report = sample("postfix-5.1.1.eml", verp=verp, email=BOB, original_headers="X: y")
    hostile = {
        "MIME parts nested deeper than 20 levels": nested(report, 1000),
        "more than 200 MIME parts": wide(report, 10_000),
        "report names more than 100 recipients": naming(report, 5_000),
        "a header section larger than 262144 bytes": huge_header(report, 1_000_000),
        "larger than 10485760 bytes; not read": report + b"x" * 10 * 1024 * 1024,
    }
    state, unmatched = snapshot(world.db), unmatched_reports(world.db)
    for reason, raw in hostile.items():
        result = stdin(verp, raw)
        assert result.exit_code == 65, (reason, result.output)
        assert result.stderr == f"stdin: refused: {reason}\n"
        assert result.stdout == ""
    assert snapshot(world.db) == state and unmatched_reports(world.db) == unmatched

    within = stdin(verp, nested(report, 5))
    assert within.exit_code == 0 and within.stdout.startswith("stdin: bounce: "), within.output
    assert world.reader(BOB).status == SubscriberStatus.BOUNCED


def test_an_mta_pipe_gets_ex_dataerr_and_the_reason_for_a_refused_message(
    cli_env: Settings, tmp_path: Path
) -> None:
    issue_id, bob_id, _ = seed_mailed(cli_env)
    verp = envelope_sender(cli_env, issue_id, bob_id)
    report = sample("postfix-5.1.1.eml", verp=verp, email=BOB, original_headers="X: y")
    with get_sessionmaker(cli_env.database_url)() as db:
        state = snapshot(db)

    def pipe(raw: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
        """The command as Postfix's pipe(8) runs it, the message on stdin."""
        return subprocess.run(
            [*NEWSLETTER, "inbound", "process", "--recipient", verp, *args],
            input=raw,
            env=dict(os.environ),
            capture_output=True,
            timeout=120,
            check=False,
        )

    deep = pipe(nested(report, 1000), "-")
    assert deep.returncode == 65, deep.stderr  # EX_DATAERR: Postfix bounces it, for good
    assert deep.stderr.decode() == "stdin: refused: MIME parts nested deeper than 20 levels\n"
    assert deep.stdout == b""
    # In a batch the other messages are still processed; the refusal decides the status.
    (tmp_path / "deep.eml").write_bytes(nested(report, 1000))
    (tmp_path / "ooo.eml").write_bytes((DATA / "out-of-office.eml").read_bytes())
    batch = pipe(b"", str(tmp_path / "deep.eml"), str(tmp_path / "ooo.eml"))
    assert batch.returncode == 65, batch.stderr
    assert batch.stderr.decode().startswith(f"{tmp_path / 'deep.eml'}: refused: MIME parts")
    assert batch.stdout.decode().startswith(f"{tmp_path / 'ooo.eml'}: unknown: ")
    with get_sessionmaker(cli_env.database_url)() as db:
        assert snapshot(db) == state and unmatched_reports(db) == 0

    help_text = pipe(b"", "--help").stdout.decode()
    assert "65  a message was refused" in help_text and "75  the database" in help_text
