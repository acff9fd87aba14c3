"""What the signup form says about a typed address: our wording, and "did you mean …?"."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email

from newsletter.readers.address_hints import (
    GENERIC,
    LOOKALIKE_DOMAINS,
    POPULAR_DOMAINS,
    reader_message,
    suggest_address,
)


def refusal(address: str) -> EmailNotValidError:
    """email-validator's own exception for ``address``."""
    with pytest.raises(EmailNotValidError) as info:
        validate_email(address, check_deliverability=False)
    return info.value


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("jane", "Please include an @, like jane@example.com."),
        ("jane\uff20example.com", "Please type a plain @, like jane@example.com."),
        ("@example.com", "Please add the part before the @, like jane@."),
        ("jane@", "Please add the part after the @, like example.com."),
        ("jane@gmailcom", "Please check the part after the @: it needs a dot, like example.com."),
        ("jane doe@example.com", "Please take out the spaces: an email address has none."),
        ("jane@exa mple.com", "Please take out the spaces: an email address has none."),
        ("jane@example..com", "Please check the dots: an address never has two in a row."),
        (".jane@example.com", "Please check the dots: an address cannot start or end with one."),
        ("jane.@example.com", "Please check the dots: an address cannot start or end with one."),
        ("Jane <jane@example.com>", "Please type just the address, like jane@example.com."),
        ("a" * 250 + "@example.com", "That email address is too long."),
        ("jane@" + "x" * 64 + ".com", "The part after the @ is too long."),
        ("jane@exa_mple.com", "Please check the part after the @, like example.com."),
        ("jane@example.invalid", "Please check the part after the @, like example.com."),
        ("ja,ne@example.com", "Please check the characters before the @."),
    ],
)
def test_email_validator_refusals_are_said_in_our_words(address: str, message: str) -> None:
    exc = refusal(address)
    assert reader_message(exc) == message
    assert "@-sign" not in message and len(message) <= 70  # fits two lines of the 360 px embed


def test_an_unknown_refusal_gets_the_general_sentence() -> None:
    assert reader_message(EmailNotValidError("Something new in a later release.")) == GENERIC


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [
        ("jane@gmial.com", "jane@gmail.com"),
        ("jane@gmal.com", "jane@gmail.com"),
        ("jane@gnail.com", "jane@gmail.com"),
        ("jane@gmail.co", "jane@gmail.com"),
        ("jane@gmail.con", "jane@gmail.com"),
        ("jane@gmailcom", "jane@gmail.com"),
        ("Jane.Doe+news@GMIAL.COM", "Jane.Doe+news@gmail.com"),  # the local part as typed
        ("jane@hotmial.com", "jane@hotmail.com"),
        ("jane@hotmail.co", "jane@hotmail.com"),
        ("jane@yahoo.co", "jane@yahoo.com"),
        ("jane@yaho.com", "jane@yahoo.com"),
        ("jane@yaho.co.uk", "jane@yahoo.co.uk"),
        ("jane@outlok.com", "jane@outlook.com"),
        ("jane@icloud.co", "jane@icloud.com"),
        ("jane@iclod.com", "jane@icloud.com"),
        ("jane@gmx.ne", "jane@gmx.net"),
        ("jane@web.d", "jane@web.de"),
    ],
)
def test_a_slip_in_a_popular_domain_is_corrected(typed: str, suggested: str) -> None:
    assert suggest_address(typed) == suggested


@pytest.mark.parametrize(
    "typed",
    [
        *(f"jane@{domain}" for domain in POPULAR_DOMAINS),
        *(f"jane@{domain}" for domain in LOOKALIKE_DOMAINS),
        # Real services near a popular name, and country endings of one.
        "jane@mac.com",
        "jane@aim.com",
        "jane@gmx.at",
        "jane@hotmail.ca",
        "jane@hotmail.de",
        "jane@outlook.fr",
        "jane@protonmail.ch",
        "jane@yahoo.co.jp",
        "jane@gmail.de",
        # Domains like none of them.
        "jane@example.com",
        "jane@news.example.com",
        "jane@mail.ru",
        "jane@qq.com",
        "jane@att.net",
        "jane@posteo.de",
        "jane@fastmail.com",
        # Not an address at all.
        "",
        "jane",
        "@gmial.com",
        "jane@",
    ],
)
def test_no_suggestion_for_a_real_or_unknown_domain(typed: str) -> None:
    assert suggest_address(typed) is None
