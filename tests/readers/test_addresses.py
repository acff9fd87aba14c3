"""Address normalisation: what the signup form accepts, and the keys it is stored under."""

from __future__ import annotations

import pytest

from newsletter.readers.addresses import (
    InvalidAddress,
    email_hash,
    email_key,
    inbox_hash,
    inbox_key,
    normalise,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ann@example.com", "ann@example.com"),
        ("  Ann@Example.COM  ", "Ann@example.com"),  # domain lower-cased, local part kept
        ("ann+news@example.co.uk", "ann+news@example.co.uk"),
        ("jörg@bücher.example", "jörg@bücher.example"),
        ("ann@xn--bcher-kva.example", "ann@bücher.example"),  # IDN shown in Unicode
    ],
)
def test_valid_addresses_are_normalised(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "ann",
        "ann@",
        "@example.com",
        "ann@@example.com",
        "ann@example",
        "ann@exa mple.com",
        "ann@example.com\r\nBcc: x@example.com",
        "ann\x00@example.com",
        "ann@exa\tmple.com",
        "a" * 250 + "@example.com",
        '"ann"@example.com>',
        "Ann <ann@example.com>",
    ],
)
def test_invalid_addresses_are_refused_with_a_readable_message(raw: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        normalise(raw)
    message = str(info.value)
    assert message and "\n" not in message
    # The reader's version: short, ours, never email-validator's "@-sign" wording.
    assert info.value.reader_message and "@-sign" not in info.value.reader_message
    assert len(info.value.reader_message) <= 80


def test_keys_are_case_insensitive_and_hash_hides_the_address() -> None:
    assert email_key("Ann@example.com") == email_key("ann@EXAMPLE.com".lower())
    assert email_hash("Ann@example.com") == email_hash("ann@example.com")
    digest = email_hash("ann@example.com")
    assert len(digest) == 64 and "ann" not in digest
    assert email_hash("bob@example.com") != digest


@pytest.mark.parametrize(
    ("address", "inbox"),
    [
        ("Ann@Example.com", "ann@example.com"),
        ("ann+news@example.com", "ann@example.com"),
        ("ann+a+b@example.com", "ann@example.com"),
        ("+ann@example.com", "+ann@example.com"),  # nothing before the tag: kept
        ("a.n.n@example.com", "a.n.n@example.com"),  # dots count outside Gmail
        ("A.B.c+x@GoogleMail.com", "abc@gmail.com"),
        ("a.b.c@gmail.com", "abc@gmail.com"),
        ("ABC@Gmail.COM", "abc@gmail.com"),
        ("jörg@bücher.example", "jörg@xn--bcher-kva.example"),  # IDN as an A-label
        ("JÖRG+x@BÜCHER.example", "jörg@xn--bcher-kva.example"),
        ("jörg@xn--bcher-kva.example", "jörg@xn--bcher-kva.example"),
    ],
)
def test_inbox_key_is_one_spelling_per_inbox(address: str, inbox: str) -> None:
    assert inbox_key(address, strip_plus_tags=True) == inbox


def test_inbox_key_of_a_normalised_idn_address_is_its_a_label_form() -> None:
    typed = [normalise("ann@bücher.example"), normalise("ANN@xn--bcher-kva.example")]
    assert {inbox_key(a, strip_plus_tags=True) for a in typed} == {"ann@xn--bcher-kva.example"}


def test_plus_tags_count_as_inboxes_of_their_own_when_the_setting_is_off() -> None:
    assert inbox_key("ann+news@example.com", strip_plus_tags=False) == "ann+news@example.com"
    assert inbox_key("A.b+x@googlemail.com", strip_plus_tags=False) == "ab+x@gmail.com"
    assert inbox_hash("ann+x@example.com", False) != inbox_hash("ann@example.com", False)


def test_inbox_hash_hides_the_address_and_joins_its_spellings() -> None:
    digest = inbox_hash("A.B.c+x@GoogleMail.com", strip_plus_tags=True)
    assert digest == inbox_hash("abc@gmail.com", strip_plus_tags=True)
    assert len(digest) == 64 and "abc" not in digest
