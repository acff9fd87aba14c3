"""What a mail calls its reader: the first name where one can be told, else the whole name."""

from __future__ import annotations

import pytest

from newsletter.readers.greeting import first_name


@pytest.mark.parametrize(
    ("name", "greeting"),
    [
        ("Jane Reader", "Jane"),
        ("Jane", "Jane"),
        ("José Ñúñez García", "José"),
        ("Dr. Jane Reader", "Jane"),
        ("Mrs Ms Jo Ann", "Jo"),
        ("Dr. Smith", "Dr. Smith"),  # a title and a surname: no first name to use alone
        ("Mr Smith", "Mr Smith"),
        ("J. Reader", "J. Reader"),  # an initial
        ("Reader, Jane", "Jane"),  # family name first, as in a register
        ("山田 太郎", "山田 太郎"),  # CJK: family name first, the whole name is the polite form
        ("김 민준", "김 민준"),
        ("李", "李"),
        ("Dr.", ""),
        ("", ""),
    ],
)
def test_first_name(name: str, greeting: str) -> None:
    assert first_name(name) == greeting
