"""Address normalisation: what the signup form accepts, and the keys it is stored under."""

from __future__ import annotations

import pytest

from newsletter.readers.addresses import InvalidAddress, email_hash, email_key, normalise


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


def test_keys_are_case_insensitive_and_hash_hides_the_address() -> None:
    assert email_key("Ann@example.com") == email_key("ann@EXAMPLE.com".lower())
    assert email_hash("Ann@example.com") == email_hash("ann@example.com")
    digest = email_hash("ann@example.com")
    assert len(digest) == 64 and "ann" not in digest
    assert email_hash("bob@example.com") != digest
