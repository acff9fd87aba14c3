"""Our header encoder: text in, one folded header out that decodes to exactly that text.

Parsed back with the standard library's modern parser on this machine's Python (3.11.7, which
still decodes an encoded-word's CR/LF into the value): a decoded value equal to the input's
one-line text proves that no encoded-word of the input was taken as an instruction.
"""

from __future__ import annotations

import base64
import email.policy
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.mail.headers import (
    MAX_LINE,
    address_field,
    mailbox,
    one_line,
    phrase,
    structured,
    unstructured,
)
from tests.support.mail_headers import legacy_display_name

PARSER = BytesParser(policy=email.policy.default)
BREAKS = ("\r", "\n", "\r\n", "\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x00", "\x1b")
_B64_ATTACK = base64.b64encode(b"Hello\r\nBcc: x@evil.example\r\n\r\nbody").decode()
HOSTILE = [
    "=?utf-8?q?Hello=0D=0ABcc:_x@evil.example?=",
    f"=?utf-8?b?{_B64_ATTACK}?=",
    f"News =?UTF-8?B?{_B64_ATTACK}?= today",
    "=?iso-8859-1?q?caf=E9=0ABcc:_x?=",
    "Hello\r\nBcc: x@evil.example",
    "Hello\x85Bcc: x@evil.example",
    "Hello\u2028Bcc:\u2029x@evil.example",
    "Zero\u200bwidth \u202eevil\u202c and soft\xadhyphen",
    "Café ☕ 東京 — naïve",
    "word " * 60,
    "x" * 300,
    "長" * 120,
]


def parse_field(field: bytes) -> email.message.EmailMessage:
    """A message holding only ``field``, parsed with the modern policy."""
    msg = PARSER.parsebytes(field + b"\r\n")
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def assert_one_clean_field(field: bytes, name: str) -> None:
    """ASCII, CRLF only at line ends, lines at most 78, one field with no defect."""
    assert field.isascii() and field.endswith(b"\r\n")
    lines = field[:-2].split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert all(len(line) <= MAX_LINE for line in lines), field
    assert all(line.startswith(b" ") for line in lines[1:])
    msg = parse_field(field)
    assert list(msg.keys()) == [name]
    assert not msg.defects and not msg[name].defects


@pytest.mark.parametrize("text", HOSTILE)
def test_a_subject_decodes_to_its_one_line_text_and_nothing_else(text: str) -> None:
    field = unstructured("Subject", text)
    assert_one_clean_field(field, "Subject")
    assert str(parse_field(field)["Subject"]) == one_line(text)


@pytest.mark.parametrize("text", HOSTILE[:4])
def test_encoded_words_in_the_input_are_encoded_again_not_passed_through(text: str) -> None:
    field = unstructured("Subject", text)
    assert b"evil" not in field and b"Bcc" not in field and "=?" in one_line(text)


@pytest.mark.parametrize("bad", BREAKS)
def test_line_breaks_and_controls_become_spaces(bad: str) -> None:
    assert one_line(f"a{bad}b") == "a b"
    assert unstructured("Subject", f"a{bad}b") == b"Subject: a b\r\n"


def test_format_characters_are_dropped_inside_words() -> None:
    assert one_line("soft\xadhyphen \u202eevil\u200d") == "softhyphen evil"


def test_plain_ascii_stays_readable() -> None:
    assert (
        unstructured("Subject", "  Markets  rally, again ") == b"Subject: Markets rally, again\r\n"
    )
    assert mailbox("To", "Ana Lopez", "ana@example.com") == b"To: Ana Lopez <ana@example.com>\r\n"
    assert mailbox("To", "", "ana@example.com") == b"To: ana@example.com\r\n"


@pytest.mark.parametrize(
    "name",
    [*HOSTILE, "Smith, John", 'Dr. "Quoted" Back\\slash', "O'Brien (the elder)", "a@b.c"],
)
def test_a_display_name_is_one_mailbox_that_decodes_to_the_name(name: str) -> None:
    field = mailbox("To", name, "ana@example.com")
    assert_one_clean_field(field, "To")
    (address,) = parse_field(field)["To"].addresses
    assert address.addr_spec == "ana@example.com"
    assert legacy_display_name(field) == one_line(name)


@pytest.mark.parametrize(
    "address", ["", "a b@example.com", "a@example.com>, <x@evil.example", "a@ex\r\nBcc: x"]
)
def test_an_address_that_is_not_one_mailbox_is_refused(address: str) -> None:
    with pytest.raises(ValueError):
        mailbox("To", "Ana", address)


def test_from_takes_the_configured_display_name_as_text() -> None:
    field = address_field("From", '"=?utf-8?q?Brief=0D=0ABcc:_x@evil.example?=" <news@example.com>')
    assert_one_clean_field(field, "From")
    (address,) = parse_field(field)["From"].addresses
    assert address.addr_spec == "news@example.com"
    assert address.display_name == "=?utf-8?q?Brief=0D=0ABcc:_x@evil.example?="
    with pytest.raises(ValueError):
        address_field("From", "no address here")
    with pytest.raises(ValueError):  # unquoted specials: which address is meant is unclear
        address_field("From", "=?utf-8?q?B=0D=0ABcc:_x@evil.example?= <news@example.com>")


def test_a_phrase_is_ascii_and_decodes_to_the_name() -> None:
    value = phrase("Café, =?utf-8?q?x=0A?= l'édition")
    assert value.isascii() and "\r" not in value and "\n" not in value
    field = structured("List-Id", f"{value} <daily.example.com>")
    assert (
        str(parse_field(field)["List-Id"]) == "Café, =?utf-8?q?x=0A?= l'édition <daily.example.com>"
    )


@pytest.mark.parametrize("value", ["x\r\nBcc: y", "caf\xe9", "tab\there"])
def test_structured_values_must_be_printable_ascii(value: str) -> None:
    with pytest.raises(ValueError):
        structured("List-Id", value)
    with pytest.raises(ValueError):
        structured("Bad Name", "ok")


def test_structured_values_fold_at_spaces() -> None:
    field = structured("List-Unsubscribe", "<https://e.example/" + "u" * 30 + ">, <mailto:u@e.x>")
    assert field.count(b"\r\n ") == 1
    assert_one_clean_field(field, "List-Unsubscribe")


# Any text at all: controls, surrogates excluded (they cannot be UTF-8), every plane.
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)
# Text built from the dangerous pieces, so the properties see them often.
PIECES = st.sampled_from(["=?", "?=", "utf-8?q?", "=0D=0A", "Bcc:", " ", "é", "長", "🎉", *BREAKS])
HOSTILE_TEXT = st.lists(st.one_of(PIECES, st.text(max_size=5)), max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_TEXT, HOSTILE_TEXT))
def test_any_subject_is_one_field_that_decodes_to_its_text(text: str) -> None:
    field = unstructured("Subject", text)
    assert_one_clean_field(field, "Subject")
    assert str(parse_field(field)["Subject"]) == one_line(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_TEXT, HOSTILE_TEXT))
def test_any_display_name_is_one_mailbox(text: str) -> None:
    field = mailbox("To", text, "ana@example.com")
    assert_one_clean_field(field, "To")
    addresses = parse_field(field)["To"].addresses
    assert [a.addr_spec for a in addresses] == ["ana@example.com"]
    assert legacy_display_name(field) == one_line(text) if one_line(text) else True


@settings(max_examples=200, deadline=None)
@given(ANY_TEXT)
def test_one_line_leaves_only_printable_text(text: str) -> None:
    line = one_line(text)
    assert line.isprintable() and line == line.strip() and "  " not in line
