"""Hostile titles, subjects and names, from a feed, the CMS API and a signup name, to the wire.

Each reader follows one topic, so each gets a digest whose Subject is one hostile title. The
bytes the SMTP sink received are parsed with the modern parser on this machine's Python
(3.11.7 decodes an encoded-word's CR/LF, the bug this guards against): one Subject, only the
headers we write, no MIME defect, and the Subject reads as the title's literal text.
"""

from __future__ import annotations

import base64
import email.policy
import email.utils
from email.message import EmailMessage
from email.parser import BytesParser
from itertools import takewhile
from pathlib import Path
from xml.sax.saxutils import escape

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from newsletter.access.api_tokens import create_token
from newsletter.content.feeds import ingest_source
from newsletter.issues import lifecycle
from newsletter.mail.headers import one_line
from newsletter.settings import Settings
from newsletter.store.models import NewsletterKind
from tests.support import dispatching as seed
from tests.support import engine
from tests.support.engine import start_digest
from tests.support.mail_headers import legacy_display_name
from tests.support.smtp import SMTPSink

settings = engine.settings
app = engine.app
db = engine.db
queue = engine.queue

_B64 = base64.b64encode(b"Hello\r\nBcc: x@evil.example\r\n\r\nInjected body").decode()
TITLES = [
    "=?utf-8?q?Hello=0D=0ABcc:_x@evil.example?=",
    f"=?utf-8?b?{_B64}?=",
    f"Morning =?UTF-8?B?{_B64}?= briefing",
    "=?utf-8?q?a=0D=0A=0D=0AInjected_body?= and more",
    "Raw\r\nBcc: x@evil.example",
    "Next\x85Line\u2028Sep\u2029Para",
    "Long " + "headline " * 40,
    "Café ☕ 東京 — naïve",
]
OURS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-id",
    "list-unsubscribe-post",
    "precedence",
    "feedback-id",
    "mime-version",
    "content-type",
}
PARSER = BytesParser(policy=email.policy.default)


def parsed_clean(data: bytes) -> EmailMessage:
    """The message, after checking it has exactly our headers and no defect anywhere."""
    msg = PARSER.parsebytes(data)
    assert isinstance(msg, EmailMessage)
    names = [name.lower() for name in msg]
    assert names.count("subject") == 1 and names.count("to") == 1
    assert set(names) <= OURS, names
    assert not msg.defects
    for name in msg:
        assert not msg[name].defects, name
    for part in msg.walk():
        assert not part.defects
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    head = data.split(b"\r\n\r\n", 1)[0]
    after = head[head.index(b"\r\nSubject:") + 2 :].split(b"\r\n")
    subject = [after[0], *takewhile(lambda line: line.startswith(b" "), after[1:])]
    assert all(len(line) <= 78 for line in subject), subject
    return msg


def assert_reads_as(subject: str, title: str) -> None:
    """The decoded Subject is the title's visible text (shortened at a word with "…")."""
    expected = one_line(title)
    if subject.endswith("…"):
        assert expected.startswith(subject[:-1]) and len(subject) <= 200
    else:
        assert subject == expected


def send_one_title_each(db: Session, settings: Settings, queue: seed.InlineQueue) -> None:
    """Readers on topic t0, t1, ... (one per title) get the digest; tasks run inline."""
    daily = lifecycle.find_newsletter(db, "daily")
    for i in range(len(TITLES)):
        seed.reader(db, f"r{i}@example.com", [daily], topics=[f"t{i}"])
    start_digest(db, settings, queue)
    queue.drain()


def check_sink(smtp_sink: SMTPSink, titles: list[str]) -> None:
    """Every reader's mail is clean and its Subject is their topic's title."""
    assert len(smtp_sink.messages) == len(titles)
    for i, title in enumerate(titles):
        (received,) = smtp_sink.to(f"r{i}@example.com")
        msg = parsed_clean(received.data)
        assert_reads_as(str(msg["Subject"]), title)
        assert b"\r\nBcc" not in received.data.split(b"\r\n\r\n", 1)[0]


def rss(tmp_path: Path) -> str:
    """A local RSS file with one item per hostile title (CR written as a character reference)."""
    items = "".join(
        f"<item><title>{escape(title).replace(chr(13), '&#13;')}</title>"
        f"<link>https://news.example.com/h-{i}</link><guid>h-{i}</guid>"
        f"<category>t{i}</category><pubDate>{_now_rfc822()}</pubDate></item>"
        for i, title in enumerate(TITLES)
    )
    path = tmp_path / "feed.xml"
    path.write_text(
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>News</title>'
        f"<link>https://news.example.com/</link>{items}</channel></rss>",
        encoding="utf-8",
    )
    return str(path)


def _now_rfc822() -> str:
    """Now, as RSS writes dates."""
    return email.utils.format_datetime(email.utils.localtime())


def test_hostile_feed_titles_reach_the_wire_as_one_subject_line(
    db: Session,
    settings: Settings,
    queue: seed.InlineQueue,
    smtp_sink: SMTPSink,
    tmp_path: Path,
) -> None:
    seed.newsletter(db, "daily")
    result = ingest_source(db, settings, rss(tmp_path), force=True)
    db.commit()
    assert not result.error and result.created == len(TITLES), result
    send_one_title_each(db, settings, queue)
    # The feed parser reads a C1 control as the windows-1252 character of that byte (NEL, 0x85,
    # is "…"), as browsers do with feeds: what it stored is the title's visible text.
    check_sink(smtp_sink, [title.replace("\x85", "\u2026") for title in TITLES])


def test_hostile_cms_titles_reach_the_wire_as_one_subject_line(
    db: Session,
    settings: Settings,
    queue: seed.InlineQueue,
    smtp_sink: SMTPSink,
    client: FlaskClient,
) -> None:
    seed.newsletter(db, "daily")
    _row, token = create_token(db, "cms", ["posts:write"])
    db.commit()
    published = email.utils.localtime().isoformat()
    posts = [
        {
            "guid": f"cms-{i}",
            "url": f"https://news.example.com/c-{i}",
            "title": title,
            "published_at": published,
            "categories": [f"t{i}"],
        }
        for i, title in enumerate(TITLES)
    ]
    response = client.post(
        "/api/v1/posts", json=posts, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.json
    send_one_title_each(db, settings, queue)
    check_sink(smtp_sink, TITLES)


def test_a_hostile_campaign_subject_and_reader_name_stay_text(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    name = "=?utf-8?q?Ana=0D=0ABcc:_x@evil.example?= \u2028López"
    seed.reader(db, "ana@example.com", [offers], name=name)
    subject = f"Half price =?utf-8?b?{_B64}?="
    issue = lifecycle.create_campaign(
        db,
        settings,
        offers,
        subject=subject,
        preheader="=?utf-8?q?pre=0D=0ABcc:_y@evil.example?=",
        body_html="<p>Offer</p>",
    )
    db.commit()
    lifecycle.send(db, settings, issue.id, queue)
    queue.drain()
    (received,) = smtp_sink.to("ana@example.com")
    msg = parsed_clean(received.data)
    assert str(msg["Subject"]) == subject
    (address,) = msg["To"].addresses
    assert address.addr_spec == "ana@example.com"
    to_field = received.data[received.data.index(b"\r\nTo:") + 2 :].split(b"\r\nSubject:")[0]
    assert legacy_display_name(to_field + b"\r\n") == one_line(name)
    assert b"\r\nBcc" not in received.data.split(b"\r\n\r\n", 1)[0]
