"""List-Id (RFC 2919): the newsletter's name must be a valid RFC 5322 phrase."""

from __future__ import annotations

import email.policy
from email.parser import BytesHeaderParser

import pytest

from newsletter.mail.compose import list_id
from newsletter.settings import Settings


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Daily digest", "Daily digest <daily.news.example.com>"),
        ("Offers & Announcements", "Offers & Announcements <daily.news.example.com>"),
        ("News: Daily, late", '"News: Daily, late" <daily.news.example.com>'),
        ('Say "hi"', '"Say \\"hi\\"" <daily.news.example.com>'),
        ("Café, l'édition", "Café l'édition <daily.news.example.com>"),
        ("  ", "<daily.news.example.com>"),
    ],
)
def test_list_id_quotes_or_drops_what_a_phrase_cannot_hold(name: str, expected: str) -> None:
    settings = Settings(env="testing")
    assert list_id(settings, "daily", name) == expected


def test_list_id_with_specials_parses_back_to_the_label() -> None:
    value = list_id(Settings(env="testing"), "daily", "News: Daily, late")
    parsed = BytesHeaderParser(policy=email.policy.default).parsebytes(
        f"List-Id: {value}\r\n\r\n".encode()
    )
    assert parsed["List-Id"].endswith("<daily.news.example.com>")
    assert not parsed["List-Id"].defects
