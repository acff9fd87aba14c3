"""Per-reader mails from a prepared issue: valid MIME, the same content as a plain render."""

from __future__ import annotations

import email
import email.header
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from email.message import EmailMessage
from html import unescape
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.content.selection import Reader, plan_digest
from newsletter.issues.links import archive_url
from newsletter.issues.rendering import (
    OutgoingMail,
    PreparedIssue,
    clear_cache,
    envelope_sender,
    load_content,
    prepare_issue,
    render_reference,
)
from newsletter.mail.mime_plan import Encoder, Hole, Literal, PlanBuilder, qp
from newsletter.mail.transport import get_transport
from newsletter.mail.verp import VerpClaim, read_verp, verp_tag
from newsletter.readers import links
from newsletter.readers.greeting import first_name
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, utcnow
from newsletter.store.models import Issue, IssueStatus, Newsletter, NewsletterKind, Post
from tests.support.smtp import SMTPSink
from tests.support.stories import add_posts

URL = re.compile(r"https?://\S+")


@dataclass
class Scene:
    """A digest issue with three posts in three categories."""

    app: Flask
    db: Session
    settings: Settings
    newsletter: Newsletter
    issue: Issue
    posts: list[Post]

    def prepared(self) -> PreparedIssue:
        """The issue prepared inside the app (the way the worker does it)."""
        with self.app.app_context():
            return prepare_issue(self.db, self.settings, self.issue.id)

    def reference(self, reader: Reader) -> tuple[str, str, str] | None:
        """The plain Jinja + css-inline render for ``reader``: (subject, text, html)."""
        with self.app.app_context():
            content = load_content(self.db, self.settings, self.issue)
            rendered = render_reference(self.app.jinja_env, self.settings, content, reader)
        if rendered is None:
            return None
        return rendered.subject, rendered.text, rendered.html


def reader(
    sid: int = 41,
    name: str = "Ana Lima",
    *,
    email_address: str = "ana@example.com",
    topics: tuple[str, ...] = (),
    sent: frozenset[int] = frozenset(),
) -> Reader:
    """A recipient as the dispatcher loads it."""
    return Reader(sid, email_address, name, 3, "UTC", topics, "daily", sent)


@pytest.fixture
def scene(app: Flask, db: Session, settings: Settings) -> Iterator[Scene]:
    """A planned digest issue, being sent."""
    yield from planned_scene(app, db, settings)


def planned_scene(app: Flask, db: Session, settings: Settings) -> Iterator[Scene]:
    """The ``scene`` fixture's work, for other modules' fixtures."""
    clear_cache()
    newsletter = Newsletter(slug="morning", name="Morning Briefing")
    db.add(newsletter)
    db.flush()
    posts = add_posts(db)
    issue = Issue(newsletter_id=newsletter.id, kind=NewsletterKind.DIGEST)
    db.add(issue)
    db.flush()
    assert plan_digest(db, settings, issue, utcnow())
    issue.status = IssueStatus.SENDING
    db.commit()
    yield Scene(app, db, settings, newsletter, issue, posts)
    clear_cache()


def parse(mail: OutgoingMail | bytes) -> EmailMessage:
    """Parse with the modern policy and insist that nothing in it is defective."""
    data = mail.message if isinstance(mail, OutgoingMail) else mail
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    for part in msg.walk():
        assert part.defects == [], part.defects
    return msg


def bodies(msg: EmailMessage) -> tuple[str, str]:
    """The decoded text and HTML parts."""
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    text, html = (p.get_content() for p in parts)
    return text, html


def display_name(message: bytes) -> str:
    """The To display name, decoded the way RFC 2047 says.

    The modern ``email`` parser keeps the folding space between two adjacent encoded-words of
    a phrase (RFC 2047 section 6.2 says to drop it), so long non-ASCII names are decoded with
    the legacy decoder, which follows the RFC.
    """
    msg = email.message_from_bytes(message, policy=email.policy.default)
    raw = msg.get_all("To")[0]
    modern = raw.addresses[0].display_name
    folded = re.search(rb"^To: (.*?) <[^>]*>\r\n(?! )", message, re.M | re.S)
    assert folded is not None
    phrase = folded.group(1).decode("ascii")
    if not phrase.startswith("=?"):
        return str(modern)
    return str(email.header.make_header(email.header.decode_header(phrase)))


def crlf(text: str) -> str:
    """What a decoded part looks like on the wire (the email package hands back LF)."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def test_headers_of_a_digest_mail(scene: Scene) -> None:
    mail = scene.prepared().message_for(reader())
    assert mail is not None
    msg = parse(mail)
    s = scene.settings

    assert msg["From"] == s.mail_from
    assert msg["To"].addresses[0].display_name == "Ana Lima"
    assert msg["To"].addresses[0].addr_spec == "ana@example.com"
    assert msg["Subject"] == "Élection : le résultat “final” arrive 😀, plus 2 more stories"
    assert msg["Message-ID"] == mail.message_id
    assert re.fullmatch(r"<[0-9a-f]{32}@news\.example\.com>", mail.message_id)
    assert msg["Date"].datetime is not None
    assert abs((utcnow() - msg["Date"].datetime).total_seconds()) < 60
    assert msg["List-Id"] == "Morning Briefing <morning.news.example.com>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Precedence"] == "bulk"
    assert msg["Feedback-ID"] == f"{scene.issue.id}:morning:digest:newsletter"
    assert msg["MIME-Version"] == "1.0"
    assert "Reply-To" not in msg

    unsubscribe = links.unsubscribe_url(
        s, links.claim_for(41, 3, "ana@example.com", scene.newsletter.id)
    )
    token = unsubscribe.rsplit("/", 1)[1]
    assert msg["List-Unsubscribe"] == (
        f"<{unsubscribe}>, <mailto:unsubscribe@news.example.com?subject=unsubscribe-{token}>"
    )
    assert mail.post_ids == tuple(p.id for p in scene.posts)


def test_reply_to_when_configured(scene: Scene) -> None:
    scene.settings = replace(scene.settings, reply_to="Desk <desk@news.example.com>")
    msg = parse(scene.prepared().message_for(reader()) or b"")
    assert msg["Reply-To"] == "Desk <desk@news.example.com>"


@pytest.mark.parametrize(
    "who",
    [
        reader(),
        reader(name=""),
        reader(name='Zoë <b>&amp;</b> "O\'Brien" ✉\xa0李'),
        reader(name="<script>alert(1)</script>"),
        reader(topics=("sport", "BUSINESS")),
        reader(name="Bo", sent=frozenset({1})),
        reader(name="Dr.", topics=("politics",)),
        reader(name="山田 太郎"),
        reader(name="Dr. <i>Jo</i> & Co"),
        # Other selections, other layouts: another lead, one section, no sections at all.
        reader(topics=("Business", "Sport")),
        reader(topics=("politics", "sport")),
        reader(topics=("business",)),
        reader(name="", sent=frozenset({1, 2})),
        reader(topics=("Politics", "Business"), sent=frozenset({1})),
    ],
    ids=[
        "named",
        "anonymous",
        "tricky-name",
        "script-name",
        "topics",
        "ledger",
        "title-only",
        "cjk",
        "title-first",
        "two-sections",
        "lead-and-one-section",
        "one-story",
        "ledger-last-only",
        "ledger-and-topics",
    ],
)
def test_parts_equal_a_plain_render_of_the_templates(scene: Scene, who: Reader) -> None:
    prepared = scene.prepared()
    assert prepared.fast  # the shipped templates take the spliced path, not the fallback
    mail = prepared.message_for(who)
    assert mail is not None
    expected = scene.reference(who)
    assert expected is not None
    subject, text, html = expected
    msg = parse(mail)
    got_text, got_html = bodies(msg)

    assert msg["Subject"] == subject
    assert crlf(got_text) == crlf(text)
    assert crlf(got_html) == crlf(html)


def test_wire_format_crlf_and_short_lines(scene: Scene) -> None:
    mail = scene.prepared().message_for(reader(name="Ünïcødé " * 20))
    assert mail is not None
    raw = mail.message
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"\r\n")
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    _, _, body = raw.partition(b"\r\n\r\n")
    assert max(len(line) for line in body.split(b"\r\n")) <= 76  # quoted-printable
    assert all(byte < 128 for byte in raw)  # 7-bit clean: no SMTPUTF8 or 8BITMIME needed
    parse(mail)


def test_html_injection_in_a_name_is_escaped(scene: Scene) -> None:
    mail = scene.prepared().message_for(reader(name='<script>alert("x")</script>'))
    assert mail is not None
    text, html = bodies(parse(mail))
    assert "<script" not in html
    assert 'Hi &lt;script&gt;alert("x")&lt;/script&gt;, here' in html
    assert 'Hi <script>alert("x")</script>, here' in text  # plain text needs no escaping


@pytest.mark.parametrize(
    ("name", "greeting"),
    [
        ("Jane Reader", "Hi Jane, here are the latest stories"),
        ("Dr. Jane Reader", "Hi Jane, here are the latest stories"),
        ("Dr. Smith", "Hi Dr. Smith, here are the latest stories"),
        ("山田 太郎", "Hi 山田 太郎, here are the latest stories"),
        ("Mrs", "Hello! Here are the latest stories"),
        ("", "Hello! Here are the latest stories"),
    ],
)
def test_the_greeting_uses_the_first_name(scene: Scene, name: str, greeting: str) -> None:
    mail = scene.prepared().message_for(reader(name=name))
    assert mail is not None
    msg = parse(mail)
    text, html = bodies(msg)
    assert f"{greeting} from {scene.settings.site_name}." in text
    assert f"{greeting} from {scene.settings.site_name}." in unescape(html)
    assert "Hi ," not in text and "Hi ," not in html
    if name:
        assert display_name(mail.message) == name  # the To header keeps the whole name


def test_line_breaks_in_a_name_cannot_inject_headers(scene: Scene) -> None:
    evil = "Mallory\r\nBcc: victim@example.net\r\n\r\n<b>body</b>"
    mail = scene.prepared().message_for(reader(name=evil))
    assert mail is not None
    msg = parse(mail)
    assert "Bcc" not in msg
    assert msg["To"].addresses[0].display_name == "Mallory Bcc: victim@example.net <b>body</b>"
    assert len(msg["To"].addresses) == 1
    text, _ = bodies(msg)
    assert "Hi Mallory, here" in text


@pytest.mark.parametrize(
    "name",
    [
        "José Ñúñez",
        "Renée O\u2019Connor",
        "Sam 🎉🎉",
        "山田 太郎",
        "长" * 60,  # several encoded-words
        'Dr. "Quoted" Back\\slash',
        "=?utf-8?q?not_an_encoded_word?=",
        "O'Brien, Pat",
        "  spaced   out  ",
    ],
)
def test_names_round_trip_in_the_to_header(scene: Scene, name: str) -> None:
    mail = scene.prepared().message_for(reader(name=name))
    assert mail is not None
    msg = parse(mail)
    (address,) = msg["To"].addresses
    assert address.addr_spec == "ana@example.com"
    assert display_name(mail.message) == " ".join(name.split())
    text, _ = bodies(msg)
    assert f"Hi {first_name(' '.join(name.split()))}, here" in text


def test_each_reader_gets_their_topics_minus_what_they_already_had(scene: Scene) -> None:
    prepared = scene.prepared()
    vote, markets, match = scene.posts

    sport = prepared.message_for(reader(topics=("Sport",)))
    assert sport is not None
    assert sport.post_ids == (match.id,)
    msg = parse(sport)
    assert msg["Subject"] == match.title  # their top story, not the issue's
    text, html = bodies(msg)
    assert match.title in text and vote.title not in text and markets.title not in text
    assert vote.title not in html

    seen = prepared.message_for(reader(sent=frozenset({vote.id})))
    assert seen is not None
    assert seen.post_ids == (markets.id, match.id)
    assert parse(seen)["Subject"] == f"{markets.title}, plus 1 more story"

    assert prepared.message_for(reader(topics=("Sport",), sent=frozenset({match.id}))) is None
    assert prepared.message_for(reader(topics=("Gardening",))) is None


def test_an_edited_subject_goes_to_everyone(scene: Scene) -> None:
    scene.issue.subject = "Your Tuesday briefing"
    scene.issue.preheader = "Three stories to start the day"
    scene.db.commit()
    mail = scene.prepared().message_for(reader(topics=("Sport",)))
    assert mail is not None
    msg = parse(mail)
    assert msg["Subject"] == "Your Tuesday briefing"
    _, html = bodies(msg)
    assert "Three stories to start the day" in html


def test_html_part_is_built_for_mail_clients(scene: Scene) -> None:
    mail = scene.prepared().message_for(reader())
    assert mail is not None
    _, html = bodies(parse(mail))
    vote = scene.posts[0]

    assert '<meta name="color-scheme" content="light dark">' in html
    assert 'role="presentation"' in html
    assert 'width="600"' in html and "max-width: 600px" in html
    # Styles are inlined (mail clients drop <style>), with explicit background and text colours.
    content_cell = re.search(r'<td class="content"[^>]*>', html)
    assert content_cell and "background-color: #ffffff" in content_cell.group(0)
    assert "color: #1c1b19" in content_cell.group(0)
    # The preheader is there but hidden.
    preheader = re.search(r'<div class="preheader"[^>]*>([^<]*)', html)
    assert preheader and "display: none" in preheader.group(0)
    assert preheader.group(1).startswith("Also: 东京 markets rally")
    # Image with alt text and a width; the title and "Read more" both link to the post.
    image = re.search(r"<img [^>]*>", html)
    assert image is not None
    assert f'alt="{vote.title}"' in image.group(0) and 'width="552"' in image.group(0)
    assert html.count(f'href="{vote.link.replace("&", "&amp;")}"') == 3
    assert "Read more" in html
    # Footer: why, links, postal address; the archive link at the top.
    assert "You are receiving Morning Briefing because you subscribed to it" in html
    assert links.preferences_url(scene.settings, links.claim_for(41, 3, "ana@example.com")) in html
    assert f"{scene.settings.site_name} · {scene.settings.street_address}" in unescape(html)
    assert scene.settings.postal_address not in html  # the site name once, not twice
    assert archive_url(scene.settings, scene.issue.id) in html


def test_text_part_reads_well_alone(scene: Scene) -> None:
    mail = scene.prepared().message_for(reader())
    assert mail is not None
    text, _ = bodies(parse(mail))
    lines = text.splitlines()

    for line in lines:
        assert len(line) <= 78 or URL.fullmatch(line), line
    lead, *rest = scene.posts
    for post in scene.posts:
        assert post.link in lines  # every link alone on its line, so it stays clickable
    # The lead first, its headline underlined; then the others under their sections.
    at = lines.index(lead.title)
    assert lines[at + 1] == "=" * len(lead.title)
    for post in rest:
        heading = post.categories[0].upper()
        assert lines.index(heading) > at and lines[lines.index(heading) + 1] == "-" * len(heading)
        assert lines.index("* " + post.title) == lines.index(heading) + 3
    assert "By Zoë Ünal" in text
    assert (
        links.unsubscribe_url(
            scene.settings, links.claim_for(41, 3, "ana@example.com", scene.newsletter.id)
        )
        in lines
    )
    assert links.preferences_url(scene.settings, links.claim_for(41, 3, "ana@example.com")) in lines
    assert archive_url(scene.settings, scene.issue.id) in lines
    assert lines[-2:] == [scene.settings.site_name, scene.settings.street_address]
    assert "<" not in text.replace("<script", "")  # no markup leaks into the text part


def test_campaign_goes_to_everyone_with_personal_links(scene: Scene) -> None:
    offers = Newsletter(slug="offers", name="Offers", kind=NewsletterKind.CAMPAIGN)
    scene.db.add(offers)
    scene.db.flush()
    campaign = Issue(
        newsletter_id=offers.id,
        kind=NewsletterKind.CAMPAIGN,
        status=IssueStatus.SENDING,
        subject="Half price for a year — this week only",
        preheader="Subscribe to the print edition",
        body_html=(
            '<p>Dear reader,</p><p>Our <a href="https://news.example.com/offer">offer</a>'
            " ends Sunday.</p><script>alert(1)</script>"
        ),
        body_text="Dear reader,\n\nOur offer ends Sunday: https://news.example.com/offer",
    )
    scene.db.add(campaign)
    scene.db.commit()
    with scene.app.app_context():
        prepared = prepare_issue(scene.db, scene.settings, campaign.id)
    assert prepared.fast

    for who in (reader(), reader(7, "", topics=("Sport",), email_address="b@example.com")):
        mail = prepared.message_for(who)
        assert mail is not None and mail.post_ids == ()
        msg = parse(mail)
        assert msg["Subject"] == "Half price for a year — this week only"
        assert msg["Feedback-ID"] == f"{campaign.id}:offers:campaign:newsletter"
        text, html = bodies(msg)
        assert "Our offer ends Sunday: https://news.example.com/offer" in text
        assert re.search(
            r'<a href="https://news.example.com/offer" rel="noopener"[^>]*>offer</a>', html
        )
        assert "<script" not in html and "alert(1)" not in html
        unsubscribe = links.unsubscribe_url(
            scene.settings, links.claim_for(who.subscriber_id, 3, who.email, offers.id)
        )
        assert unsubscribe in text and unsubscribe in html
        with scene.app.app_context():
            content = load_content(scene.db, scene.settings, campaign)
            ref = render_reference(scene.app.jinja_env, scene.settings, content, who)
        assert ref is not None
        assert crlf(text) == crlf(ref.text) and crlf(html) == crlf(ref.html)


def test_a_campaign_written_only_in_html_keeps_its_structure_in_the_text_part(
    scene: Scene,
) -> None:
    offers = Newsletter(slug="offers", name="Offers", kind=NewsletterKind.CAMPAIGN)
    scene.db.add(offers)
    scene.db.flush()
    campaign = Issue(
        newsletter_id=offers.id,
        kind=NewsletterKind.CAMPAIGN,
        status=IssueStatus.SENDING,
        subject="Half price",
        body_html=(
            "<h1>Half price</h1><p>All weekend.</p><p>What you get:</p>"
            "<ul><li>Every article</li><li>The app</li></ul>"
            '<ol><li>Pick a plan</li><li>Pay <a href="https://news.example.com/offer">half</a>'
            "</li></ol><p>" + "Terms apply to this offer, as they always do. " * 4 + "</p>"
        ),
    )
    scene.db.add(campaign)
    scene.db.commit()
    with scene.app.app_context():
        prepared = prepare_issue(scene.db, scene.settings, campaign.id)
    assert prepared.fast
    mail = prepared.message_for(reader())
    assert mail is not None
    text = bodies(parse(mail))[0].replace("\r\n", "\n")
    assert (
        "HALF PRICE\n\nAll weekend.\n\nWhat you get:\n\n* Every article\n* The app\n\n"
        "1. Pick a plan\n2. Pay half (https://news.example.com/offer)\n\nTerms apply"
    ) in text
    for line in text.splitlines():
        assert len(line) <= 76 or URL.fullmatch(line), line


def test_overridden_templates_that_defeat_splicing_fall_back_to_the_plain_render(
    scene: Scene, tmp_path: Path
) -> None:
    override = tmp_path / "site-templates"
    (override / "email").mkdir(parents=True)
    (override / "email" / "digest.txt").write_text(
        '{% extends "email/_layout.txt" %}{% block content %}HELLO {{ name|upper }}!\n'
        "{% for post in posts %}{{ loop.index }}. {{ post.title }}\n{% endfor %}"
        "{% endblock %}"
    )

    settings = replace(scene.settings, template_dir=str(override))
    app = create_app(settings)
    clear_cache()
    with app.app_context():
        prepared = prepare_issue(scene.db, settings, scene.issue.id)
    assert prepared.fast is False  # the filter on the name and loop.index defeat the splice

    mail = prepared.message_for(reader(name="Ana", topics=("sport",)))
    assert mail is not None
    text, html = bodies(parse(mail))
    assert "HELLO ANA!" in text
    assert f"1. {scene.posts[2].title}" in text
    assert "Hi Ana, here" in html  # the shipped HTML template still applies
    dispose_engines()


def test_prepared_issue_is_cached_until_the_issue_changes(scene: Scene) -> None:
    first = scene.prepared()
    assert scene.prepared() is first

    scene.db.add(
        Post(
            guid="late",
            link="https://news.example.com/late",
            title="Late",
            published_at=utcnow(),
        )
    )
    scene.posts[0].retracted_at = utcnow()
    scene.issue.preheader = "changed"  # bumps updated_at: a new cache key
    scene.db.commit()
    second = scene.prepared()
    assert second is not first
    mail = second.message_for(reader())
    assert mail is not None
    assert scene.posts[0].id not in mail.post_ids  # a retracted post never goes out again


def test_envelope_sender_is_verp_ready() -> None:
    base = Settings(secret_key="x" * 40)
    assert envelope_sender(base, 5, 9) == "newsletter@news.example.com"
    plain = replace(base, bounce_address="bounces@news.example.com")
    assert envelope_sender(plain, 5, 9) == "bounces@news.example.com"
    verp = replace(base, bounce_address="bounces+@news.example.com")
    signed = envelope_sender(verp, 5, 9)
    assert signed == f"bounces+5-9-{verp_tag(base.secret_key, 5, 9)}@news.example.com"
    assert read_verp(verp, signed) == VerpClaim(5, 9, signed=True)


def test_delivered_over_real_smtp_unchanged(scene: Scene, smtp_sink: SMTPSink) -> None:
    mail = scene.prepared().message_for(reader(name="Zoë"))
    assert mail is not None
    settings = replace(scene.settings, smtp_url=smtp_sink.url)
    sender = envelope_sender(settings, scene.issue.id, 41)
    get_transport(settings).send(sender, "ana@example.com", mail.message)

    (received,) = smtp_sink.wait_for(1)
    assert received.mail_from == sender
    assert received.rcpt_tos == ["ana@example.com"]
    assert received.data.replace(b"\r\n", b"\n") == mail.message.replace(b"\r\n", b"\n")
    assert bodies(parse(received.data)) == bodies(parse(mail))


def test_dkim_signature_verifies_when_configured(scene: Scene, tmp_path: Path) -> None:
    dkim_module = pytest.importorskip(
        "newsletter.mail.dkim", reason="the DKIM signer (newsletter.mail.dkim) is not there yet"
    )
    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(pem)
    scene.settings = replace(
        scene.settings,
        dkim_key_file=str(key_file),
        dkim_selector="mail",
        dkim_domain="news.example.com",
    )
    assert dkim_module.DKIMSigner.from_settings(scene.settings) is not None
    mail = scene.prepared().message_for(reader(name="Zoë"))
    assert mail is not None
    assert mail.message.startswith(b"DKIM-Signature:")
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    assert dkim.verify(mail.message, dnsfunc=lambda name, timeout=5: record)
    parse(mail)


def test_splicing_quoted_printable_equals_encoding_the_whole_text() -> None:
    import binascii
    import random

    rng = random.Random(7)
    alphabet = ["a", " ", "=", "é", "😀", "\r\n", "\t", ".", "-", "x" * 90, "  \r\n", "李"]
    for _ in range(500):
        encoder = Encoder()
        whole = ""
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.3:
                value = "".join(rng.choice(["b", "ü", " ", "&", "=", "y" * 40]) for _ in "abc")
                encoder.value(value)
                whole += value
            else:
                piece = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
                encoder.literal(Literal.of(piece))
                whole += piece
        encoded = encoder.finish()
        assert binascii.a2b_qp(encoded).decode("utf-8") == whole
        assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
        assert b"\n" not in encoded.replace(b"\r\n", b"")
        assert encoded == qp(whole)  # the same bytes as encoding the whole part at once


def test_a_plan_filled_per_reader_equals_encoding_the_whole_text() -> None:
    import random

    rng = random.Random(11)
    alphabet = ["a", " ", "=", "é", "{", "}", "{x}", "\r\n", "\t", ".", "x" * 90, "  \r\n"]
    values_alphabet = ["b", "ü", " ", "&", "=", "{pref}", "}", "{{", "y" * 40]
    for _ in range(300):
        builder = PlanBuilder()
        parts: list[str | Hole] = []
        for _ in range(rng.randint(1, 8)):
            if rng.random() < 0.35:
                hole = Hole.named(rng.choice(["name", "pref"]))
                builder.value(hole)
                parts.append(hole)
            else:
                piece = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
                builder.literal(Literal.of(piece))
                parts.append(piece)
        plan = builder.plan()
        for _ in range(3):  # one plan, several readers
            values = {
                key: "".join(rng.choice(values_alphabet) for _ in "abc") for key in ("name", "pref")
            }
            whole = "".join(
                values[part[1:-1]] if isinstance(part, Hole) else part for part in parts
            )
            assert b"".join(plan.fill(values)) == qp(whole)
