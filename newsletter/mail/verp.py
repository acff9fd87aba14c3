"""Signed VERP return paths: ``bounces+ISSUE-READER-TAG@domain``.

With a bounce address that ends in ``+@`` every mail goes out with its own envelope sender, so a
bounce or complaint that comes back to it names the issue and the reader it is about. The ids are
small numbers anyone could guess, so the address also carries a tag: an HMAC over the two ids,
keyed from the secret key with a purpose of its own (a VERP tag can never pass for a token, nor a
token for a tag). The tag is lower-case base32, because some MTAs lower-case local parts, and
short (12 characters, 60 bits), because the local part of an address has at most 64.

The sender (``issues.rendering.envelope_sender``) builds these addresses and inbound processing
reads them back; both go through this module, so they cannot drift apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import lru_cache

from newsletter.settings import Settings

VERP_PURPOSE = b"newsletter.verp.v1"
TAG_LENGTH = 12
_ID = r"\d{1,18}"


@dataclass(frozen=True)
class VerpClaim:
    """What one VERP address says: the issue and reader ids, and whether its tag holds."""

    issue_id: int
    subscriber_id: int
    signed: bool


def is_verp(settings: Settings) -> bool:
    """True when the bounce address asks for VERP (its local part ends in ``+``)."""
    local, _, domain = settings.bounce_address.strip().rpartition("@")
    return local.endswith("+") and bool(domain)


@lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC keyed for VERP tags, built once per secret and copied per mail (the hot path)."""
    # A key for this purpose only: the secret key itself also signs the reader tokens.
    key = hmac.new(secret.encode(), VERP_PURPOSE, hashlib.sha256).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def verp_tag(secret: str, issue_id: int, subscriber_id: int) -> str:
    """The short, lower-case tag that signs one (issue, reader) pair."""
    signer = _keyed(secret).copy()
    signer.update(f"{issue_id}-{subscriber_id}".encode())
    mac = signer.digest()
    return base64.b32encode(mac).decode("ascii").lower()[:TAG_LENGTH]


def verp_address(settings: Settings, issue_id: int, subscriber_id: int) -> str:
    """The signed VERP return path of one reader's mail (``is_verp`` must hold)."""
    local, _, domain = settings.bounce_address.strip().rpartition("@")
    tag = verp_tag(settings.secret_key, issue_id, subscriber_id)
    return f"{local}{issue_id}-{subscriber_id}-{tag}@{domain}"


def read_verp(settings: Settings, address: str) -> VerpClaim | None:
    """The ids an address names in our VERP form (signed or not), or None if it is not one."""
    if not is_verp(settings):
        return None
    local, _, domain = settings.bounce_address.strip().rpartition("@")
    pattern = re.compile(
        rf"^{re.escape(local)}({_ID})-({_ID})(?:-([a-z2-7]{{1,64}}))?@{re.escape(domain)}$",
        re.IGNORECASE,
    )
    match = pattern.match(address.strip())
    if match is None:
        return None
    issue_id, subscriber_id = int(match.group(1)), int(match.group(2))
    given = (match.group(3) or "").lower()
    expected = verp_tag(settings.secret_key, issue_id, subscriber_id)
    return VerpClaim(issue_id, subscriber_id, hmac.compare_digest(given, expected))
