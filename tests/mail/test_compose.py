"""List-Id (RFC 2919): the newsletter's name as a valid RFC 5322 phrase, encoded by us."""

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
        ("  ", "<daily.news.example.com>"),
    ],
)
def test_list_id_keeps_plain_names_readable(name: str, expected: str) -> None:
    assert list_id(Settings(env="testing"), "daily", name) == expected


@pytest.mark.parametrize(
    "name",
    ["News: Daily, late", 'Say "hi"', "Café, l'édition", "=?utf-8?q?Daily=0D=0ABcc:_x@y?="],
)
def test_list_id_encodes_what_a_phrase_cannot_hold_and_decodes_to_the_name(name: str) -> None:
    value = list_id(Settings(env="testing"), "daily", name)
    assert value.isascii() and value.endswith(" <daily.news.example.com>")
    parsed = BytesHeaderParser(policy=email.policy.default).parsebytes(
        f"List-Id: {value}\r\n\r\n".encode()
    )
    assert str(parsed["List-Id"]) == f"{name} <daily.news.example.com>"
    assert not parsed["List-Id"].defects


def test_list_id_with_specials_parses_back_to_the_label() -> None:
    value = list_id(Settings(env="testing"), "daily", "News: Daily, late")
    parsed = BytesHeaderParser(policy=email.policy.default).parsebytes(
        f"List-Id: {value}\r\n\r\n".encode()
    )
    assert parsed["List-Id"].endswith("<daily.news.example.com>")
    assert not parsed["List-Id"].defects
