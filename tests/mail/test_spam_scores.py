"""Every kind of mail we send, scored by SpamAssassin: each under 1.0 point, the scores printed.

Each kind is produced the way production produces it (the real code paths, signed with a real
DKIM key, sent over SMTP to an aiosmtpd sink), then all are scored by one offline run of Debian's
SpamAssassin (local tests only: see tests/support/spamassassin.py). Without the network it
cannot check DKIM, SPF or blocklists; what it judges is what we control: headers, MIME, HTML.

``KINDS`` is the table of mail kinds: adding a kind is one line. Alert and sunset mails do not
exist yet; their rows come with them.

Run alone, with the table shown: ``scripts/test -k spam_scores -rA``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.issues import lifecycle
from newsletter.issues.rendering import clear_cache
from newsletter.mail.transport import close_transports
from newsletter.readers.link_mails import send_data_link, send_manage_link
from newsletter.readers.signup import subscribe
from newsletter.readers.signup_mails import (
    send_already_subscribed,
    send_confirmation,
    send_welcome,
)
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines
from newsletter.store.models import Subscriber, SubscriberStatus
from tests.support import dispatching as seed
from tests.support.dkim import write_dkim_key
from tests.support.readers import Lists, add_subscriber, make_lists, signup_for
from tests.support.smtp import SMTPSink
from tests.support.spamassassin import Score, score_messages, spamassassin
from tests.support.stories import add_posts

LIMIT = 1.0

pytestmark = pytest.mark.skipif(
    spamassassin() is None,
    reason="spamassassin is not installed (Debian's package spamassassin; .ci/run installs it)",
)

CAMPAIGN_HTML = """
<h2>Meet the newsroom on 12 December</h2>
<p>Once a year we open the newsroom to the readers who make our work possible. Join our
editors for an evening of short talks about how this year's biggest stories were reported,
followed by questions and a drink.</p>
<p>The evening starts at 7pm at our offices. Places are limited, so please let us know you are
coming by replying to this mail or through <a href="https://news.example.com/events">our events
page</a>.</p>
<p>We hope to see you there.</p>
"""


@dataclass
class Mailroom:
    """The service's mail paths over signed, realistic settings, and a reader on three lists."""

    app: Flask
    db: Session
    settings: Settings
    lists: Lists
    reader: Subscriber
    digest_id: int | None = None

    def digest(self) -> int:
        """The weekly digest of three posts (planned on first use; the test copy shares it)."""
        if self.digest_id is None:
            add_posts(self.db)
            issue = lifecycle.create_digest(self.db, self.settings, self.lists.weekly)
            self.db.commit()
            self.digest_id = issue.id
        return self.digest_id


def confirmation(room: Mailroom) -> None:
    """The double opt-in mail to a new address."""
    signup = signup_for("new.reader@example.com", room.lists.daily.id, room.lists.offers.id)
    result = subscribe(room.db, room.settings, signup)
    room.db.commit()
    assert result.consent_id is not None
    assert send_confirmation(room.db, room.settings, room.app.jinja_env, result.consent_id).sent


def already_subscribed(room: Mailroom) -> None:
    """The note to a reader who signed up again."""
    assert send_already_subscribed(room.db, room.settings, room.app.jinja_env, room.reader.id).sent


def welcome(room: Mailroom) -> None:
    """The welcome after the confirmation click."""
    joined = [room.lists.daily.id, room.lists.offers.id]
    assert send_welcome(room.db, room.settings, room.app.jinja_env, room.reader.id, joined).sent


def links_renewed(room: Mailroom) -> None:
    """The new preferences link after a reader logged out all older ones."""
    assert send_manage_link(room.db, room.settings, room.app.jinja_env, room.reader.id).sent


def your_data(room: Mailroom) -> None:
    """The one-hour link to everything we hold about the reader."""
    assert send_data_link(room.db, room.settings, room.app.jinja_env, room.reader.id).sent


def _send_issue(room: Mailroom, issue_id: int) -> None:
    """Send an issue through the real dispatch (fan-out, batches, SMTP), run in this process."""
    queue = seed.InlineQueue(room.settings)
    lifecycle.send(room.db, room.settings, issue_id, queue)
    queue.drain()


def digest(room: Mailroom) -> None:
    """A digest to its reader."""
    _send_issue(room, room.digest())


def campaign(room: Mailroom) -> None:
    """An editor-written campaign to its reader."""
    issue = lifecycle.create_campaign(
        room.db,
        room.settings,
        room.lists.offers,
        subject="Meet the newsroom: our readers' evening on 12 December",
        body_html=CAMPAIGN_HTML,
    )
    room.db.commit()
    _send_issue(room, issue.id)


def editor_test_copy(room: Mailroom) -> None:
    """The "[TEST]" copy of a digest an editor mails to themselves before sending."""
    [result] = lifecycle.test_send(room.db, room.settings, room.digest(), ["editor@example.com"])
    assert result.ok, result.answer


# Every kind of mail we send, and how to make one.
KINDS: dict[str, Callable[[Mailroom], None]] = {
    "confirmation": confirmation,
    "already-subscribed": already_subscribed,
    "welcome": welcome,
    "links-renewed": links_renewed,
    "your-data": your_data,
    "digest": digest,
    "campaign": campaign,
    "test copy": editor_test_copy,
}


@pytest.fixture
def signed(settings: Settings, smtp_sink: SMTPSink, tmp_path: Path) -> Iterator[Settings]:
    """Settings that sign and send as production does: DKIM, an https service, SMTP."""
    yield replace(
        settings,
        smtp_url=smtp_sink.url,
        base_url="https://newsletter.example.com",
        dkim_key_file=str(write_dkim_key(tmp_path / "dkim.pem")),
        dkim_selector="mail",
        dkim_domain="news.example.com",
        signup_mails_per_day=len(KINDS),  # one reader gets four of these mails today
    )
    clear_cache()
    close_transports()


@pytest.fixture
def room(signed: Settings, db: Session) -> Iterator[Mailroom]:
    """The app over the signed settings, its context pushed (mails render in it)."""
    app = create_app(signed)
    lists = make_lists(db)
    reader = add_subscriber(
        db,
        "ana.lima@example.com",
        SubscriberStatus.ACTIVE,
        [lists.daily, lists.weekly, lists.offers],
        name="Ana Lima",
    )
    with app.app_context():
        yield Mailroom(app, db, signed, lists, reader)
    dispose_engines()


def table(scores: dict[str, Score]) -> str:
    """The scores as a table: kind, points, the rules that fired."""
    width = max(len(kind) for kind in scores)
    lines = [f"SpamAssassin scores (limit {LIMIT}):"]
    lines += [f"  {k:<{width}}  {s.score:5.1f}  {s.rules_text()}" for k, s in scores.items()]
    return "\n".join(lines)


def test_every_kind_of_mail_scores_under_one_point(
    room: Mailroom, smtp_sink: SMTPSink, tmp_path: Path
) -> None:
    messages = []
    for kind, produce in KINDS.items():
        before = len(smtp_sink.messages)
        produce(room)
        new = smtp_sink.messages[before:]
        assert len(new) == 1, f"{kind}: {len(new)} mails sent, expected one"
        assert new[0].data.startswith(b"DKIM-Signature:"), f"{kind} is not DKIM-signed"
        messages.append(new[0].data)

    scores = dict(zip(KINDS, score_messages(messages, tmp_path / "spamassassin"), strict=True))

    report = table(scores)
    print(report)
    over = [kind for kind, score in scores.items() if score.score >= LIMIT]
    assert not over, f"{', '.join(over)} at {LIMIT} points or more\n{report}"
    # Text coloured like its background reads as hidden text, whatever else offsets it.
    hidden = [kind for kind, score in scores.items() if "HTML_FONT_LOW_CONTRAST" in score.rules]
    assert not hidden, f"{', '.join(hidden)}: text too close to its background\n{report}"
