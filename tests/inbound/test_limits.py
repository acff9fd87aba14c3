"""Inbound mail is bounded: a message too deep, too wide, naming too many recipients, with huge
headers or too large is refused before the email parser or the bounce heuristics see it, and
below every limit the same report is read as before. No database here (see test_processing)."""

from __future__ import annotations

from email import message_from_bytes
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.inbound.limits import (
    LINE_MAX,
    MAX_DEPTH,
    MAX_HEADER_BYTES,
    MAX_PARTS,
    MAX_RECIPIENTS,
    InboundRefused,
    check_tree,
    prescan,
)
from newsletter.inbound.parsing import Inbound, MessageKind, NotAMessage, read_message
from tests.support.hostile_mail import huge_header, many_headers, naming, nested, wide
from tests.support.inbound import BOB, sample

VERP = "bounces+1-1-abcdefabcdef@news.example.com"


def bounce() -> bytes:
    """A Postfix DSN for Bob."""
    return sample("postfix-5.1.1.eml", verp=VERP, email=BOB, original_headers="X: y")


def complaint() -> bytes:
    """An ARF abuse report about a mail to Bob."""
    return sample(
        "arf-complaint.eml",
        feedback_type="abuse",
        verp=VERP,
        email=BOB,
        original_message=f"To: {BOB}\nSubject: Offer\n\nHi",
    )


def refusal(raw: bytes) -> InboundRefused:
    """The refusal ``read_message`` raises for ``raw``."""
    with pytest.raises(InboundRefused) as caught:
        read_message(raw)
    return caught.value


HOSTILE = {
    "depth 1000": (lambda: nested(bounce(), 1000), "depth", "nested deeper than 20 levels"),
    "depth 21": (lambda: nested(bounce(), MAX_DEPTH), "depth", "nested deeper"),
    "201 parts": (lambda: wide(bounce(), MAX_PARTS - 3), "parts", "more than 200 MIME parts"),
    "DSN naming 101": (lambda: naming(bounce(), MAX_RECIPIENTS), "recipients", "more than 100"),
    "ARF naming 101": (lambda: naming(complaint(), MAX_RECIPIENTS), "recipients", "than 100"),
    "10,000 parts": (lambda: wide(bounce(), 10_000), "parts", "more than 200 MIME parts"),
    "DSN naming 5,000": (lambda: naming(bounce(), 5_000), "recipients", "more than 100"),
    "ARF naming 5,000": (lambda: naming(complaint(), 5_000), "recipients", "more than 100"),
    "a 1 MB header": (lambda: huge_header(bounce(), 1_000_000), "headers", "header section"),
    "50,000 headers": (lambda: many_headers(bounce(), 50_000), "headers", "header section"),
    # The email package parses parameters in time growing with the square of the field.
    "a long Content-Type": (
        lambda: bounce().replace(b"report-type=", b'x="' + b";" * 100_000 + b'"; report-type='),
        "headers",
        "a content-type field longer than 1000 characters",
    ),
    "a long Final-Recipient": (
        lambda: bounce().replace(b"Final-Recipient: rfc822; ", b'Final-Recipient: "' + b";" * 9000),
        "headers",
        "a final-recipient field longer than 1000 characters",
    ),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_message_beyond_a_limit_is_refused_with_its_reason(name: str) -> None:
    build, limit, words = HOSTILE[name]
    refused = refusal(build())
    assert refused.limit == limit and words in refused.reason, refused.reason


def test_just_below_every_limit_the_report_is_read_as_before() -> None:
    # Each wrapper is one level and the report's own multipart another; the report has four
    # parts (itself, its text, its delivery status, the quoted headers).
    for raw in (
        bounce(),
        nested(bounce(), MAX_DEPTH - 1),
        wide(bounce(), MAX_PARTS - 4),
        huge_header(bounce(), MAX_HEADER_BYTES // 2),
        many_headers(bounce(), 1000),
    ):
        read = read_message(raw)
        assert read.kind == MessageKind.BOUNCE and read.failures[0].address == BOB
        assert read.failures[0].permanent and read.failures[0].status == "5.1.1"
    many = read_message(naming(bounce(), MAX_RECIPIENTS - 1))
    assert many.kind == MessageKind.BOUNCE and len(many.failures) == MAX_RECIPIENTS
    arf = read_message(naming(complaint(), MAX_RECIPIENTS - 1))
    assert arf.kind == MessageKind.COMPLAINT and len(arf.complained) == MAX_RECIPIENTS


def test_a_message_over_the_size_limit_is_refused_unread() -> None:
    refused = refusal(bounce() + b"x" * 10 * 1024 * 1024)
    assert refused.limit == "size" and "larger than 10485760 bytes" in refused.reason


def test_nested_message_rfc822_parts_count_as_depth() -> None:
    inner = bounce()
    for _ in range(3 * MAX_DEPTH):
        inner = b"From: a@example.org\nContent-Type: message/rfc822\n\n" + inner
    assert refusal(inner).limit == "depth"


def test_the_tree_check_refuses_what_a_scan_might_miss() -> None:
    # Built, not parsed: the check on the parsed tree counts without recursion on its own.
    top = part = MIMEMultipart()
    for _ in range(MAX_DEPTH + 5):
        child = MIMEMultipart()
        part.attach(child)
        part = child
    part.attach(MIMEText("deep"))
    with pytest.raises(InboundRefused, match="nested deeper"):
        check_tree(top)
    wide_tree = MIMEMultipart()
    for i in range(MAX_PARTS + 1):
        wide_tree.attach(MIMEText(f"part {i}"))
    with pytest.raises(InboundRefused, match="more than 200 MIME parts"):
        check_tree(wide_tree)


def test_plain_bounce_text_naming_thousands_of_addresses_is_refused_or_bounded() -> None:
    lines = b"".join(b"<reader%d@example.net>: 550 5.1.1 User unknown\n" % i for i in range(5000))
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\nTo: " + VERP.encode() + b"\n"
        b"Subject: Undelivered Mail Returned to Sender\n\n"
        b"I'm sorry to have to inform you that your message could not\n"
        b"be delivered to one or more recipients.\n\n" + lines
    )
    try:
        read = read_message(raw)
    except InboundRefused as exc:
        assert exc.limit == "recipients"
    else:
        assert len(read.failures) <= MAX_RECIPIENTS


def test_long_lines_reach_the_heuristics_cut_short() -> None:
    # flufl.bounce's patterns backtrack over a line: a line of a megabyte would take hours.
    raw = b"From: x@example.org\nSubject: Delivery has failed\n\nDelivery has failed\n" + (
        b"[a" * 500_000
    )
    assert read_message(raw).kind == MessageKind.UNKNOWN
    assert len(raw.splitlines()[-1]) > 100 * LINE_MAX


def test_comments_nested_a_thousand_deep_in_an_address_name_nobody() -> None:
    raw = b"From: x@example.org\nTo: " + b"(" * 1500 + b"\nSubject: hi\n\nhello\n"
    read = read_message(raw, recipient="bounces@news.example.com")
    assert read.envelope == ("bounces@news.example.com",)


# --- arbitrary input ------------------------------------------------------------------------------

FRAGMENTS = st.sampled_from(
    [
        b"\n",
        b"\r\n",
        b"\r",
        b"--b\n",
        b"--b--\n",
        b"--b \t\r\n",
        b"--c\n",
        b"--c--  \r\n",
        b"--\n",
        b"----\n",
        b'Content-Type: multipart/mixed; boundary=""\n',
        b'Content-type: MULTIPART/alternative;\n boundary="c"\n',
        b"Content-Type: multipart/mixed; boundary=b\n",
        b"Content-Type: multipart/digest; boundary=c\n",
        b"Content-Type: message/rfc822\n",
        b"Content-Type: message/delivery-status\n",
        b"Content-Type: message/feedback-report\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n",
        b"Final-Recipient: rfc822; a@example.org\n",
        b"Original-Rcpt-To: a@example.org\n",
        b"Action: failed\nStatus: 5.1.1\n",
        b"From: a@example.org\n",
        b"Subject: unsubscribe-abc.def\n",
        b" folded\n",
        b"\x00\xff\xfe",
        b"(((",
        b"=?utf-8?q?x?=",
    ]
)


@st.composite
def nests(draw: st.DrawFn) -> bytes:
    """Multiparts and message/rfc822 parts nested 15 to 30 deep, a fragment put in anywhere."""
    kinds = draw(st.lists(st.booleans(), min_size=15, max_size=30))
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=n%d\n\n--n%d\n" % (i, i)
        if multipart
        else b"Content-Type: message/rfc822\n\n"
        for i, multipart in enumerate(kinds)
    )
    tail = b"".join(
        b"\n--n%d--\n" % i for i, multipart in reversed(list(enumerate(kinds))) if multipart
    )
    raw = head + b"text\n" + tail
    at = draw(st.integers(0, len(raw)))
    return raw[:at] + draw(FRAGMENTS) + raw[at:]


MESSAGES = st.one_of(
    st.binary(max_size=2000),
    st.lists(st.one_of(FRAGMENTS, st.binary(max_size=8)), max_size=120).map(b"".join),
    nests(),
)


def read_or_refuse(raw: bytes) -> Inbound | None:
    """Read ``raw``; None when it is refused or is not mail (the only two ways it may fail)."""
    try:
        return read_message(raw)
    except (NotAMessage, InboundRefused):
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES)
def test_arbitrary_bytes_are_read_refused_or_not_mail_and_nothing_else(raw: bytes) -> None:
    read = read_or_refuse(raw)
    assert read is None or isinstance(read.kind, MessageKind)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES)
def test_what_the_scan_lets_through_the_parser_reads_within_the_limits(raw: bytes) -> None:
    # The scan is what keeps the parser's time linear: it must never see less than the parser.
    try:
        prescan(raw)
    except InboundRefused:
        return
    check_tree(message_from_bytes(raw))
