"""Absolute URLs for links we mail, built from NEWSLETTER_BASE_URL (no request needed).

A reader's links are signed for a :class:`~newsletter.readers.tokens.ManageClaim`: the reader's
id, token version and a hash of the address (see :mod:`newsletter.readers.tokens` for what each
kind of link grants).
"""

from __future__ import annotations

from newsletter.readers.addresses import email_key
from newsletter.readers.tokens import (
    DataClaim,
    ManageClaim,
    address_digest,
    make_data_token,
    make_manage_token,
)
from newsletter.settings import Settings
from newsletter.store.models import Subscriber


def absolute(settings: Settings, path: str) -> str:
    """Join the base URL and a path."""
    return settings.base_url.rstrip("/") + "/" + path.lstrip("/")


def claim_for(
    subscriber_id: int, token_version: int, email: str, newsletter_id: int | None = None
) -> ManageClaim:
    """The claim behind a reader's links (one list to leave, or everything with None)."""
    return ManageClaim(
        subscriber_id, token_version, address_digest(email_key(email)), newsletter_id
    )


def subscriber_claim(subscriber: Subscriber, newsletter_id: int | None = None) -> ManageClaim:
    """:func:`claim_for` a subscriber row."""
    return claim_for(subscriber.id, subscriber.token_version, subscriber.email, newsletter_id)


def confirm_url(settings: Settings, token: str) -> str:
    """The double opt-in confirmation page."""
    return absolute(settings, f"/confirm/{token}")


def manage_token(settings: Settings, claim: ManageClaim) -> str:
    """The token behind a reader's preferences link (and their "leave all" link)."""
    return make_manage_token(settings.secret_key, ManageClaim(*_whole(claim)))


def preferences_url(settings: Settings, claim: ManageClaim) -> str:
    """A reader's preferences page."""
    return absolute(settings, f"/preferences/{manage_token(settings, claim)}")


def unsubscribe_token(settings: Settings, claim: ManageClaim) -> str:
    """The opaque token behind an unsubscribe link (the claim's newsletter, or all when None)."""
    return make_manage_token(settings.secret_key, claim)


def unsubscribe_url(settings: Settings, claim: ManageClaim) -> str:
    """The https URL for List-Unsubscribe and the unsubscribe link in every mail."""
    return absolute(settings, f"/unsubscribe/{unsubscribe_token(settings, claim)}")


def unsubscribe_mailto(settings: Settings, token: str) -> str:
    """The mailto alternative in List-Unsubscribe; the subject carries the same token."""
    return f"mailto:{settings.unsubscribe_address}?subject=unsubscribe-{token}"


def data_url(settings: Settings, subscriber: Subscriber) -> str:
    """The one-hour link to what we hold about a reader (only ever mailed to the address)."""
    claim = DataClaim(
        subscriber.id, subscriber.token_version, address_digest(email_key(subscriber.email))
    )
    return absolute(settings, f"/data/{make_data_token(settings.secret_key, claim)}")


def _whole(claim: ManageClaim) -> tuple[int, int, str]:
    """The claim without its newsletter: a manage token covers every list."""
    return claim.subscriber_id, claim.version, claim.address
