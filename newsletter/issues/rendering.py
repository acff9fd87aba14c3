"""An issue → one complete, signed message per reader, at a few dozen microseconds a mail.

:func:`prepare_issue` does everything heavy once per issue (bench/profile_send.py shows the
split, bench/README.md the figures): it renders the templates once with marker strings where
per-reader values go, renders each post's block once, inlines the CSS once, encodes every
complete line as quoted-printable once and folds the static headers once.
:meth:`PreparedIssue.message_for` then only picks the reader's posts, escapes and splices a
handful of strings, and joins bytes.

Before it is used, the fast path is checked against :func:`render_reference` (the plain
Jinja render + CSS inlining) for a sample reader; if a site's overridden templates make the two
differ, the issue falls back to the reference render per reader, slower but correct.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, Template
from markupsafe import Markup
from sqlalchemy.orm import Session

from newsletter.content.selection import Reader, clean_line, select_for_reader, topic_keys
from newsletter.issues.content import (
    IssueContent,
    NothingToPreview,
    PersonalLinks,
    app_env,
    load_content,
    personal_links,
    preheader_for,
    preview,
    preview_issue,
    render_archive,
    render_reference,
    subject_for,
    template_context,
)
from newsletter.issues.layout import Piece, arrange, catalogue, piece_context
from newsletter.issues.links import archive_url, preview_url
from newsletter.mail.compose import inline_css, list_id
from newsletter.mail.dkim import DKIMSigner
from newsletter.mail.headers import address_field, mailbox, structured, unstructured
from newsletter.mail.mime_plan import (
    CRLF,
    Hole,
    Literal,
    Plan,
    PlanBuilder,
    Segment,
    Slot,
    crlf,
    date_header,
    escape_attribute,
    escape_text,
    inside_tag,
    qp,
    raw_header,
)
from newsletter.mail.verp import is_verp, verp_address
from newsletter.readers import links, tokens
from newsletter.readers.addresses import email_key
from newsletter.readers.greeting import first_name
from newsletter.readers.tokens import address_digest
from newsletter.settings import Settings
from newsletter.store.models import Issue, NewsletterKind

log = logging.getLogger(__name__)

POSTS_BLOCK = "posts"
CACHE_SIZE = 8
CACHE_SECONDS = 300.0  # a post retracted mid-send drops out of later batches
_MEMO_LIMIT = 4096
# Plans per issue: a plan is small (pointers to shared encoded lines) but a list whose readers
# have very varied ledgers could make thousands of selections; past this many, plan per reader.
_PLAN_LIMIT = 1024
# Per-reader values (plain text) and the keys of their HTML-escaped forms in a plan's values.
_PERSONAL = ("name", "first", "pref", "unsub")
# Per-reader values and how they are named in a skeleton's markers.
FIELDS = ("name", "first", "pref", "unsub", "subject", "preheader")
# Names whose greeting exercises every escaping path (the first name of the first holds all the
# tricky characters), and a name with no first name: the fast path is checked with each.
_SAMPLE_NAMES = ('Zoë<b>&amp;</b>"O\'Brien"✉\xa0李 Ünal', "Dr.", "")
# Which skeleton a reader takes: (has a name, has a first name to greet with).
_VARIANTS = ((True, True), (True, False), (False, False))

# Re-exported: the rendering API in one place for the dispatcher, the CLI and the web.
__all__ = [
    "IssueContent",
    "NothingToPreview",
    "OutgoingMail",
    "PreparedIssue",
    "Reader",
    "archive_url",
    "envelope_sender",
    "load_content",
    "prepare_issue",
    "preview",
    "preview_issue",
    "preview_url",
    "render_archive",
    "render_reference",
]


@dataclass(frozen=True)
class OutgoingMail:
    """One reader's message, ready for ``Transport.send``."""

    message: bytes  # complete RFC 5322 bytes, CRLF, DKIM-signed when configured
    message_id: str  # the Message-ID header value, e.g. "<...@domain>"
    post_ids: tuple[int, ...]  # posts included (to record in the sent_posts ledger)


def envelope_sender(settings: Settings, issue_id: int, subscriber_id: int) -> str:
    """The SMTP MAIL FROM (becomes Return-Path): signed VERP when the bounce address ends in
    ``+@`` (newsletter/mail/verp.py)."""
    bounce = settings.bounce_address.strip()
    if bounce:
        return verp_address(settings, issue_id, subscriber_id) if is_verp(settings) else bounce
    address = settings.mail_from.rsplit("<", 1)[-1].rstrip(">").strip()
    return address


# --- The once-per-issue skeleton -----------------------------------------------------------------


@dataclass(frozen=True)
class Skeleton:
    """One body part split at the per-reader values: prefix, the pieces of the posts region
    (each post as lead and as a story, each section heading: :func:`layout.catalogue`),
    suffix."""

    prefix: tuple[Segment, ...]
    pieces: tuple[tuple[Segment, ...], ...]
    suffix: tuple[Segment, ...]

    def plan(self, script: Sequence[int], values: Mapping[str, str]) -> Plan:
        """The part for one layout (``script``: its pieces in order), per-reader values left as
        :class:`Hole` in ``values``."""
        builder = PlanBuilder()
        builder.segments(self.prefix, values)
        for index in script:
            builder.segments(self.pieces[index], values)
        builder.segments(self.suffix, values)
        return builder.plan()


class SkeletonError(Exception):
    """The templates cannot be split for the fast path (e.g. a filter applied to a marker)."""


class _Markers:
    """Marker strings unique to one preparation, made of letters and digits only so that
    escaping, CSS inlining and URL handling pass them through unchanged."""

    def __init__(self) -> None:
        self.nonce = "nl" + secrets.token_hex(6)
        self.pattern = re.compile(rf"x{self.nonce}([a-z]+|p\d+)x")

    def field(self, name: str) -> str:
        """The marker standing for one per-reader value."""
        return f"x{self.nonce}{name}x"

    def post(self, index: int) -> str:
        """The marker in front of post ``index``'s piece."""
        return f"x{self.nonce}p{index}x"

    @property
    def end(self) -> str:
        """The marker after the last post's piece."""
        return f"x{self.nonce}endx"


def _render_block(template: Template, block: str, context: dict[str, Any]) -> str:
    """Render one block of a template on its own."""
    render = template.blocks.get(block)
    if render is None:
        raise SkeletonError(f"template {template.name} has no {{% block {block} %}}")
    return "".join(render(template.new_context(context)))


def _render_part(
    env: Environment,
    content: IssueContent,
    extension: str,
    context: dict[str, Any],
    markers: _Markers,
    pieces: Sequence[Piece],
) -> str:
    """Render one part with markers, the posts block once per piece, CSS inlined for HTML."""
    name = f"email/{content.template}.{extension}"
    template = env.get_template(name)
    if content.kind is NewsletterKind.DIGEST:
        region = []
        for index, piece in enumerate(pieces):
            region.append(markers.post(index))
            region.append(_render_block(template, POSTS_BLOCK, {**context, **piece_context(piece)}))
        region.append(markers.end)
        wrapper = env.from_string(
            "{% extends " + repr(name) + " %}{% block " + POSTS_BLOCK + " %}"
            "{{ _posts_region }}{% endblock %}"
        )
        # The region is autoescaped template output plus our markers: already safe HTML.
        region_html = Markup("".join(region))  # noqa: S704
        document = wrapper.render({**context, "_posts_region": region_html})
    else:
        document = template.render(context)
    if extension == "html":
        document = inline_css(document)
    return crlf(document)


def _split(document: str, markers: _Markers, html: bool, posts: int) -> Skeleton:
    """Cut a rendered part at its markers into literals and slots (``posts``: the pieces)."""
    sections: list[list[Segment]] = [[]]
    expected_post = 0
    position = 0
    for match in markers.pattern.finditer(document):
        _add_literal(sections[-1], document[position : match.start()])
        position = match.end()
        code = match.group(1)
        if code in FIELDS:
            attribute = html and inside_tag(document, match.start())
            sections[-1].append(Slot(code + ("@" if attribute else ""), attribute))
        elif code == "end" or code == f"p{expected_post}":
            if code != "end":
                expected_post += 1
            sections.append([])
        else:
            raise SkeletonError(f"marker {code!r} out of place in the rendered template")
    _add_literal(sections[-1], document[position:])
    if any(
        isinstance(segment, Literal) and markers.nonce in segment.text.lower()
        for section in sections
        for segment in section
    ):
        raise SkeletonError("a template changes a per-reader value (a filter on a marker?)")
    if posts:
        if expected_post != posts or len(sections) != posts + 2:
            raise SkeletonError("the posts block did not render once per piece")
        return Skeleton(tuple(sections[0]), tuple(map(tuple, sections[1:-1])), tuple(sections[-1]))
    if len(sections) == 1:
        return Skeleton(tuple(sections[0]), (), ())
    if len(sections) == 2:  # a digest without posts: only the end marker
        return Skeleton(tuple(sections[0]), (), tuple(sections[1]))
    raise SkeletonError("unexpected post markers")


def _add_literal(section: list[Segment], text: str) -> None:
    """Append fixed text to a section (merging with a preceding literal)."""
    if not text:
        return
    if section and isinstance(section[-1], Literal):
        text = section.pop().text + text  # type: ignore[union-attr]
    section.append(Literal.of(text))


# --- Per-reader links ---------------------------------------------------------------------------


class _TokenMinter:
    """Signs the preferences and unsubscribe tokens of :mod:`newsletter.readers.tokens`, fast.

    ``itsdangerous`` re-derives its key and builds a serializer, a signer and an HMAC object
    for every token (≈30 µs); with the key derived once and a one-shot ``hmac.digest`` the same
    token costs a few µs. :meth:`matches_reference` proves the output is byte-identical to
    ``newsletter.readers.tokens`` before it is used, so a change there cannot go unnoticed.
    """

    def __init__(self, secret: str) -> None:
        self._keys = {
            salt: hashlib.sha1(salt.encode() + b"signer" + secret.encode()).digest()  # noqa: S324
            for salt in (tokens.MANAGE_SALT, tokens.UNSUBSCRIBE_SALT)
        }

    def _sign(self, salt: str, payload: str) -> str:
        """``payload`` (compact JSON, too short for itsdangerous to compress) signed."""
        body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=")
        signature = hmac.digest(self._keys[salt], body, "sha1")
        return (body + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()

    def manage(self, subscriber_id: int, version: int, address: str) -> str:
        """The token behind a preferences link (``address``: the hex address digest)."""
        payload = f'[{int(subscriber_id)},{int(version)},"{_hex(address)}"]'
        return self._sign(tokens.MANAGE_SALT, payload)

    def unsubscribe(
        self, subscriber_id: int, version: int, address: str, newsletter_id: int
    ) -> str:
        """The token behind a one-newsletter unsubscribe link."""
        payload = f'[{int(subscriber_id)},{int(version)},"{_hex(address)}",{int(newsletter_id)}]'
        return self._sign(tokens.UNSUBSCRIBE_SALT, payload)

    def matches_reference(self, settings: Settings, newsletter_id: int) -> bool:
        """True when these tokens equal :mod:`newsletter.readers.links` ones (sample readers)."""
        for sid, version, email in ((1, 0, "a@example.com"), (987654321012, 7, "Zoë@example.org")):
            claim = links.claim_for(sid, version, email, newsletter_id)
            if self.manage(sid, version, claim.address) != links.manage_token(settings, claim):
                return False
            expected = links.unsubscribe_token(settings, claim)
            if self.unsubscribe(sid, version, claim.address, newsletter_id) != expected:
                return False
        return True


def _hex(value: str) -> str:
    """``value`` if it is lower-case hex (all an address digest can be), so JSON needs no escape."""
    if value.strip("0123456789abcdef"):
        raise ValueError("an address digest is lower-case hex")
    return value


# --- PreparedIssue -------------------------------------------------------------------------------

_TEXT_PART = (
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)
_HTML_PART = (
    b'Content-Type: text/html; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)


class PreparedIssue:
    """An issue made ready to send: templates rendered, CSS inlined, parts encoded, headers
    folded. :meth:`message_for` is the cheap per-reader step."""

    def __init__(self, settings: Settings, env: Environment, content: IssueContent) -> None:
        """Do the once-per-issue work (a few milliseconds)."""
        self.settings = settings
        self.env = env
        self.content = content
        self.issue_id: int = content.issue_id or 0
        self.kind = content.kind
        self.post_ids = tuple(p.id for p in content.posts)
        # Every lead, story and heading a reader's layout can use, rendered once (layout.py).
        digest = self.kind is NewsletterKind.DIGEST
        self._pieces = catalogue(content.posts, content.newsletter.categories) if digest else ()
        self._piece_index = {piece: index for index, piece in enumerate(self._pieces)}
        self._topics: dict[tuple[str, ...], frozenset[str]] = {}
        self._headlines: dict[tuple[int, ...], tuple[bytes, str, str]] = {}
        self._dkim = _dkim_signer(settings)
        self._build_headers()
        self.fast = True
        self._variants: dict[tuple[bool, bool], tuple[Skeleton, Skeleton]] = {}
        self._plan_memo: dict[tuple[tuple[int, ...], tuple[bool, bool]], tuple[Plan, Plan]] = {}
        try:
            self._build_skeletons()
            self._check_against_reference()
        except SkeletonError as exc:
            log.warning(
                "issue %s: templates do not fit the fast path (%s); rendering per reader",
                self.issue_id,
                exc,
            )
            self.fast = False

    # Once per issue

    def _build_headers(self) -> None:
        """Fold the headers every reader's copy shares; pick a MIME boundary."""
        s, content = self.settings, self.content
        self.boundary = f"=_nl_{secrets.token_hex(16)}"
        top = [address_field("From", s.mail_from)]
        if s.reply_to:
            top.append(address_field("Reply-To", s.reply_to))
        feedback = f"{self.issue_id}:{content.newsletter.slug}:{content.kind.value}"
        bottom = [
            structured("List-Id", list_id(s, content.newsletter.slug, content.newsletter.name)),
            raw_header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            raw_header("Precedence", "bulk"),
            raw_header("Feedback-ID", f"{feedback}:{s.feedback_id_sender}"),
            raw_header("MIME-Version", "1.0"),
            raw_header("Content-Type", f'multipart/alternative; boundary="{self.boundary}"'),
            CRLF.encode(),
            f"--{self.boundary}{CRLF}".encode(),
            _TEXT_PART,
        ]
        self._head_top = b"".join(top)
        self._domain = s.mail_from_domain
        self._preferences_prefix = links.absolute(s, "/preferences/")
        self._unsubscribe_prefix = links.absolute(s, "/unsubscribe/")
        self._mailto_prefix = links.unsubscribe_mailto(s, "")
        minter = _TokenMinter(s.secret_key)
        self._minter = minter if minter.matches_reference(s, content.newsletter.id) else None
        self._head_bottom = b"".join(bottom)
        self._between = f"{CRLF}--{self.boundary}{CRLF}".encode() + _HTML_PART
        self._closing = f"{CRLF}--{self.boundary}--{CRLF}".encode()

    def _build_skeletons(self) -> None:
        """Render each part with markers, for readers with and without a (first) name."""
        markers = _Markers()
        for variant in _VARIANTS:
            named, greeted = variant
            context = template_context(
                self.settings,
                self.content,
                posts=self.content.posts,
                name=markers.field("name") if named else "",
                greeting_name=markers.field("first") if greeted else "",
                preferences_url=markers.field("pref"),
                unsubscribe_url=markers.field("unsub"),
                subject=markers.field("subject"),
                preheader=markers.field("preheader"),
            )
            parts = []
            for extension in ("txt", "html"):
                document = _render_part(
                    self.env, self.content, extension, context, markers, self._pieces
                )
                parts.append(_split(document, markers, extension == "html", len(self._pieces)))
            self._variants[variant] = (parts[0], parts[1])

    def _check_against_reference(self) -> None:
        """Prove the spliced output equals the plain render for tricky sample readers: every
        post for each sample name, then other leads and sections (all but the first post,
        the last alone)."""
        if self.kind is NewsletterKind.DIGEST and not self.content.posts:
            return
        ids = [post.id for post in self.content.posts]
        samples = [(name, frozenset[int]()) for name in _SAMPLE_NAMES]
        if len(ids) > 1:
            samples += [(_SAMPLE_NAMES[0], frozenset(ids[:1])), ("", frozenset(ids[:-1]))]
        for name, sent in samples:
            sample = Reader(1, "reader@example.com", name, 0, "UTC", (), None, sent)
            reference = render_reference(self.env, self.settings, self.content, sample)
            assert reference is not None
            chosen = self._selection(sample)
            text_chunks, html_chunks, _, _ = self._parts(sample, clean_line(name), chosen)
            text, html = b"".join(text_chunks), b"".join(html_chunks)
            for label, encoded, expected in (
                ("text", text, reference.text),
                ("html", html, reference.html),
            ):
                decoded = binascii.a2b_qp(encoded).decode("utf-8")
                if decoded != crlf(expected):
                    raise SkeletonError(f"the {label} part differs from the reference render")

    # Per reader

    def _selection(self, reader: Reader) -> tuple[int, ...]:
        """Which of the issue's posts go to this reader."""
        if self.kind is not NewsletterKind.DIGEST:
            return ()
        topics = self._topics.get(reader.topics)
        if topics is None:
            topics = self._topics[reader.topics] = topic_keys(reader.topics)
        return select_for_reader(self.content.posts, topics, reader.sent_post_ids)

    def _headline(self, chosen: tuple[int, ...]) -> tuple[bytes, str, str]:
        """Subject header, subject and preheader for a selection of posts (memoised)."""
        found = self._headlines.get(chosen)
        if found is None:
            posts = [self.content.posts[i] for i in chosen]
            subject = subject_for(self.settings, self.content, posts)
            found = (
                unstructured("Subject", subject),
                subject,
                preheader_for(self.content, posts),
            )
            if len(self._headlines) < _MEMO_LIMIT:
                self._headlines[chosen] = found
        return found

    def _links(self, reader: Reader) -> PersonalLinks:
        """Like :func:`personal_links`, with the fixed parts of the URLs built once."""
        sid, version = reader.subscriber_id, reader.token_version
        if self._minter is None:
            return personal_links(self.settings, self.content, reader)
        address = address_digest(email_key(reader.email))
        token = self._minter.unsubscribe(sid, version, address, self.content.newsletter.id)
        return PersonalLinks(
            preferences_url=self._preferences_prefix + self._minter.manage(sid, version, address),
            unsubscribe_url=self._unsubscribe_prefix + token,
            unsubscribe_mailto=self._mailto_prefix + token,
        )

    def _parts(
        self, reader: Reader, name: str, chosen: tuple[int, ...]
    ) -> tuple[list[bytes], list[bytes], bytes, PersonalLinks]:
        """The reader's encoded text and HTML parts, Subject header and links."""
        personal = self._links(reader)
        subject_header, subject, preheader = self._headline(chosen)
        if not self.fast:
            reference = render_reference(self.env, self.settings, self.content, reader)
            if reference is None:
                raise LookupError("nothing to render for this reader")
            text_qp = qp(crlf(reference.text))
            html_qp = qp(crlf(reference.html))
            return [text_qp], [html_qp], subject_header, personal
        greeting = first_name(name)
        values = {
            "name": name,
            "first": greeting,
            "pref": personal.preferences_url,
            "unsub": personal.unsubscribe_url,
        }
        variant = (bool(name), bool(greeting))
        text_plan, html_plan = self._plans(chosen, variant, subject, preheader)
        return (
            text_plan.fill(values),
            html_plan.fill(_html_values(values)),
            subject_header,
            personal,
        )

    def _script(self, chosen: tuple[int, ...]) -> tuple[int, ...]:
        """The pieces of a selection's layout, in order (lead, section headings, stories)."""
        if self.kind is not NewsletterKind.DIGEST:
            return ()
        posts = [self.content.posts[i] for i in chosen]
        layout = arrange(posts, self.content.newsletter.categories)
        return tuple(self._piece_index[piece] for piece in layout.pieces())

    def _plans(
        self, chosen: tuple[int, ...], variant: tuple[bool, bool], subject: str, preheader: str
    ) -> tuple[Plan, Plan]:
        """Text and HTML plans of a selection (memoised): everything but the reader's values."""
        key = (chosen, variant)
        found = self._plan_memo.get(key)
        if found is not None:
            return found
        holes: dict[str, str] = {field: Hole.named(field) for field in _PERSONAL}
        plain = {**holes, "subject": subject, "preheader": preheader}
        html: dict[str, str] = {field: Hole.named(field) for field in _html_values(holes)}
        for field, value in (("subject", subject), ("preheader", preheader)):
            html[field] = escape_text(value)
            html[field + "@"] = escape_attribute(value)
        text_skeleton, html_skeleton = self._variants[variant]
        script = self._script(chosen)
        found = (text_skeleton.plan(script, plain), html_skeleton.plan(script, html))
        if len(self._plan_memo) < _PLAN_LIMIT:
            self._plan_memo[key] = found
        return found

    def message_for(self, reader: Reader) -> OutgoingMail | None:
        """The reader's mail (per-reader posts, name, links, headers spliced in cheaply),
        or None when there is nothing for this reader (no posts left for their topics)."""
        chosen = self._selection(reader)
        if self.kind is NewsletterKind.DIGEST and not chosen:
            return None
        name = clean_line(reader.name)
        text_qp, html_qp, subject_header, personal = self._parts(reader, name, chosen)
        mid = f"<{uuid.uuid4().hex}@{self._domain}>"  # as compose.message_id, domain cached
        pieces = [
            self._head_top,
            mailbox("To", name, reader.email),
            subject_header,
            date_header(),
            f"Message-ID: {mid}{CRLF}".encode("ascii"),
            (
                f"List-Unsubscribe: <{personal.unsubscribe_url}>,{CRLF}"
                f" <{personal.unsubscribe_mailto}>{CRLF}"
            ).encode("ascii"),
            self._head_bottom,
        ]
        pieces += text_qp
        pieces.append(self._between)
        pieces += html_qp
        pieces.append(self._closing)
        message = b"".join(pieces)  # the one copy of the body per reader
        if self._dkim is not None:
            message = self._dkim.sign(message)
        return OutgoingMail(
            message=message,
            message_id=mid,
            post_ids=tuple(self.content.posts[i].id for i in chosen),
        )


def _html_values(plain: Mapping[str, str]) -> dict[str, str]:
    """Per-reader values escaped for the HTML part: text nodes, and ``key@`` for attributes."""
    html = {key: escape_text(value) for key, value in plain.items()}
    html.update({key + "@": escape_attribute(value) for key, value in plain.items()})
    return html


def _dkim_signer(settings: Settings) -> DKIMSigner | None:
    """The DKIM signer when configured, else None."""
    return DKIMSigner.from_settings(settings)


# --- The per-process cache -----------------------------------------------------------------------

_cache: OrderedDict[tuple[Any, ...], tuple[float, PreparedIssue]] = OrderedDict()
_cache_lock = threading.Lock()


def prepare_issue(
    session: Session, settings: Settings, issue_id: int, env: Environment | None = None
) -> PreparedIssue:
    """Everything done ONCE per issue (posts loaded, CSS inlined, text wrapped, MIME skeleton
    built, static headers); cached per process by (issue_id, issue.updated_at)."""
    issue = session.get(Issue, issue_id)
    if issue is None:
        raise LookupError(f"no issue {issue_id}")
    env = env if env is not None else app_env()
    key = (issue_id, issue.updated_at, settings, env)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            _cache.move_to_end(key)
            return hit[1]
    prepared = PreparedIssue(settings, env, load_content(session, settings, issue))
    with _cache_lock:
        _cache[key] = (now, prepared)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return prepared


def clear_cache() -> None:
    """Forget every prepared issue (tests, or after changing templates)."""
    with _cache_lock:
        _cache.clear()
