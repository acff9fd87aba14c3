"""Signed, unguessable tokens for the links we mail. Each purpose has its own salt.

Every token names a reader by id and is bound to the reader's address (a short hash of it), so a
token can never act on another row that later gets the same id. What each one grants:

* confirmation: activate the lists of one signup; expires after ``confirm_expiry_days``;
* manage (preferences and "leave all") and unsubscribe (one list): change that reader's choices,
  pause, leave; they never expire (RFC 8058 expects an unsubscribe link to keep working) but die
  when the reader's ``token_version`` is bumped ("log out all links"), except for leaving;
* undo: put back the lists one unsubscribe just left, for 15 minutes;
* data: show what we hold about the reader (the consent records' IP and user agent), for one
  hour; it is only ever mailed to the address, on request.

Payloads hold ids and a short hash, never the address itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

CONFIRM_SALT = "newsletter.confirm.v1"
MANAGE_SALT = "newsletter.manage.v2"
UNSUBSCRIBE_SALT = "newsletter.unsubscribe.v2"
UNDO_SALT = "newsletter.undo.v1"
DATA_SALT = "newsletter.data.v1"

UNDO_SECONDS = 15 * 60
DATA_SECONDS = 60 * 60


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
    address: str  # address_digest of the email key
    newsletter_id: int | None = None  # unsubscribe from this list only; None means manage all


@dataclass(frozen=True)
class UndoClaim:
    """What the "undo" button after an unsubscribe asserts: these lists were just left."""

    subscriber_id: int
    version: int
    address: str
    newsletter_ids: tuple[int, ...]


@dataclass(frozen=True)
class DataClaim:
    """What a mailed "your data" link asserts: show this reader what we hold."""

    subscriber_id: int
    version: int
    address: str


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
    payload: list[Any] = [claim.subscriber_id, claim.version, claim.address]
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
                sid, version, address = payload
                return ManageClaim(int(sid), int(version), str(address))
            sid, version, address, newsletter_id = payload
            return ManageClaim(int(sid), int(version), str(address), int(newsletter_id))
        except (TypeError, ValueError) as exc:
            raise TokenError("This link is not valid.") from exc
    raise TokenError("This link is not valid.")


def make_undo_token(secret: str, claim: UndoClaim) -> str:
    """Sign an undo claim; it carries its own timestamp and lasts :data:`UNDO_SECONDS`."""
    payload = [claim.subscriber_id, claim.version, claim.address, list(claim.newsletter_ids)]
    return URLSafeTimedSerializer(secret, salt=UNDO_SALT).dumps(payload)


def read_undo_token(secret: str, token: str) -> UndoClaim:
    """Verify an undo token, or raise :class:`TokenError` (``expired`` once its time is up)."""
    payload = _load_timed(secret, UNDO_SALT, token, UNDO_SECONDS)
    try:
        sid, version, address, lists = payload
        return UndoClaim(int(sid), int(version), str(address), tuple(int(x) for x in lists))
    except (TypeError, ValueError) as exc:
        raise TokenError("This link is not valid.") from exc


def make_data_token(secret: str, claim: DataClaim) -> str:
    """Sign a data claim; it carries its own timestamp and lasts :data:`DATA_SECONDS`."""
    return URLSafeTimedSerializer(secret, salt=DATA_SALT).dumps(
        [claim.subscriber_id, claim.version, claim.address]
    )


def read_data_token(secret: str, token: str) -> DataClaim:
    """Verify a data token, or raise :class:`TokenError` (``expired`` once its hour is up)."""
    payload = _load_timed(secret, DATA_SALT, token, DATA_SECONDS)
    try:
        sid, version, address = payload
        return DataClaim(int(sid), int(version), str(address))
    except (TypeError, ValueError) as exc:
        raise TokenError("This link is not valid.") from exc


def _load_timed(secret: str, salt: str, token: str, max_age_seconds: int) -> Any:
    """The payload of a timed token, or TokenError (expired or not valid)."""
    try:
        return URLSafeTimedSerializer(secret, salt=salt).loads(token, max_age=max_age_seconds)
    except SignatureExpired as exc:
        raise TokenError("This link has expired.", expired=True) from exc
    except BadSignature as exc:
        raise TokenError("This link is not valid.") from exc
