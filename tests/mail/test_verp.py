"""Signed VERP return paths: what the sender writes, the reader reads back, and nothing else."""

from __future__ import annotations

from dataclasses import replace

from newsletter.mail.verp import TAG_LENGTH, VerpClaim, is_verp, read_verp, verp_address, verp_tag
from newsletter.settings import Settings

SECRET = "verp-test-secret-key-that-is-long-enough-0123"
VERP = Settings(secret_key=SECRET, bounce_address="bounces+@news.example.com")


def test_the_address_carries_a_short_lower_case_tag_over_both_ids() -> None:
    address = verp_address(VERP, 12, 345)
    local = address.split("@")[0]
    issue, reader, tag = local.removeprefix("bounces+").split("-")
    assert (issue, reader) == ("12", "345")
    assert len(tag) == TAG_LENGTH and tag == tag.lower() and tag.isalnum()
    assert tag == verp_tag(SECRET, 12, 345)
    # Every id pair has its own tag; the largest ids still fit the 64 characters of a local part.
    assert len({verp_tag(SECRET, i, s) for i in range(20) for s in range(20)}) == 400
    assert len(verp_address(VERP, 10**18 - 1, 10**18 - 1).split("@")[0]) <= 64


def test_what_the_sender_writes_reads_back_signed_even_upper_cased() -> None:
    address = verp_address(VERP, 12, 345)
    assert read_verp(VERP, address) == VerpClaim(12, 345, signed=True)
    assert read_verp(VERP, address.upper()) == VerpClaim(12, 345, signed=True)
    assert read_verp(VERP, f" {address} ") == VerpClaim(12, 345, signed=True)


def test_a_missing_wrong_borrowed_or_foreign_tag_does_not_hold() -> None:
    mine = verp_tag(SECRET, 12, 999)  # a reader who knows their own return path
    cases = {
        "bounces+12-345@news.example.com": "missing (the old, guessable form)",
        "bounces+12-345-aaaaaaaaaaaa@news.example.com": "made up",
        f"bounces+12-345-{mine}@news.example.com": "another reader's tag",
        f"bounces+12-345-{verp_tag(SECRET, 13, 345)}@news.example.com": "another issue's tag",
        f"bounces+12-345-{verp_tag('another-secret-key-0123456789-abcdefgh', 12, 345)}"
        "@news.example.com": "signed with another key",
        f"bounces+12-345-{verp_tag(SECRET, 12, 345)[:-1]}@news.example.com": "cut short",
    }
    for address, why in cases.items():
        assert read_verp(VERP, address) == VerpClaim(12, 345, signed=False), why


def test_addresses_that_are_not_our_verp_form_name_nothing() -> None:
    signed = verp_address(VERP, 12, 345)
    assert read_verp(VERP, signed.replace("news.example.com", "evil.example")) is None
    assert read_verp(VERP, "bounces@news.example.com") is None
    assert read_verp(VERP, "bob@example.org") is None
    assert read_verp(VERP, "bounces+12@news.example.com") is None
    plain = replace(VERP, bounce_address="bounces@news.example.com")
    assert not is_verp(plain) and is_verp(VERP)
    assert read_verp(plain, signed) is None
