"""Signed, unguessable tokens for the links we mail. Each purpose has its own salt.

Confirmation tokens expire and are bound to the address and the lists signed up for; the
management tokens behind preferences and unsubscribe links never expire (RFC 8058 expects an
unsubscribe link to keep working) but die when the subscriber's ``token_version`` is bumped.
Payloads hold ids and a short hash, never the address itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

CONFIRM_SALT = "newsletter.confirm.v1"
MANAGE_SALT = "newsletter.manage.v1"
UNSUBSCRIBE_SALT = "newsletter.unsubscribe.v1"


class TokenError(Exception):
    """A token is forged, tampered with, expired or for something else."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def address_digest(email_key: str) -> str:
    """A short, non-reversible fingerprint binding a token to one address."""
    return hashlib.sha256(email_key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ConfirmClaim:
    """What a confirmation link asserts."""

    subscriber_id: int
    address: str  # address_digest of the email key
    newsletter_ids: tuple[int, ...]
    nonce: str


@dataclass(frozen=True)
class ManageClaim:
    """What a preferences or unsubscribe link asserts."""

    subscriber_id: int
    version: int
    newsletter_id: int | None = None  # unsubscribe from this list only; None means manage all


def make_confirm_token(secret: str, claim: ConfirmClaim) -> str:
    """Sign a confirmation claim; it carries its own timestamp for expiry."""
    payload = [claim.subscriber_id, claim.address, list(claim.newsletter_ids), claim.nonce]
    return URLSafeTimedSerializer(secret, salt=CONFIRM_SALT).dumps(payload)


def read_confirm_token(secret: str, token: str, max_age_seconds: int) -> ConfirmClaim:
    """Verify a confirmation token and return its claim, or raise :class:`TokenError`."""
    try:
        payload = URLSafeTimedSerializer(secret, salt=CONFIRM_SALT).loads(
            token, max_age=max_age_seconds
        )
    except SignatureExpired as exc:
        raise TokenError("This confirmation link has expired.", expired=True) from exc
    except BadSignature as exc:
        raise TokenError("This confirmation link is not valid.") from exc
    try:
        sid, address, lists, nonce = payload
        return ConfirmClaim(int(sid), str(address), tuple(int(x) for x in lists), str(nonce))
    except (TypeError, ValueError) as exc:
        raise TokenError("This confirmation link is not valid.") from exc


def make_manage_token(secret: str, claim: ManageClaim) -> str:
    """Sign a preferences/unsubscribe claim (no expiry)."""
    salt = UNSUBSCRIBE_SALT if claim.newsletter_id is not None else MANAGE_SALT
    payload = [claim.subscriber_id, claim.version]
    if claim.newsletter_id is not None:
        payload.append(claim.newsletter_id)
    return URLSafeSerializer(secret, salt=salt).dumps(payload)


def read_manage_token(secret: str, token: str) -> ManageClaim:
    """Verify a preferences or unsubscribe token, or raise :class:`TokenError`."""
    for salt in (MANAGE_SALT, UNSUBSCRIBE_SALT):
        try:
            payload = URLSafeSerializer(secret, salt=salt).loads(token)
        except BadSignature:
            continue
        try:
            if salt == MANAGE_SALT:
                sid, version = payload
                return ManageClaim(int(sid), int(version))
            sid, version, newsletter_id = payload
            return ManageClaim(int(sid), int(version), int(newsletter_id))
        except (TypeError, ValueError) as exc:
            raise TokenError("This link is not valid.") from exc
    raise TokenError("This link is not valid.")
