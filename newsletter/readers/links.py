"""Absolute URLs for links we mail, built from NEWSLETTER_BASE_URL (no request needed)."""

from __future__ import annotations

from newsletter.readers.tokens import ManageClaim, make_manage_token
from newsletter.settings import Settings


def absolute(settings: Settings, path: str) -> str:
    """Join the base URL and a path."""
    return settings.base_url.rstrip("/") + "/" + path.lstrip("/")


def confirm_url(settings: Settings, token: str) -> str:
    """The double opt-in confirmation page."""
    return absolute(settings, f"/confirm/{token}")


def manage_token(settings: Settings, subscriber_id: int, token_version: int) -> str:
    """The token behind a reader's preferences link."""
    return make_manage_token(settings.secret_key, ManageClaim(subscriber_id, token_version))


def preferences_url(settings: Settings, subscriber_id: int, token_version: int) -> str:
    """A reader's preferences page."""
    return absolute(
        settings, f"/preferences/{manage_token(settings, subscriber_id, token_version)}"
    )


def unsubscribe_token(
    settings: Settings, subscriber_id: int, token_version: int, newsletter_id: int | None
) -> str:
    """The opaque token behind an unsubscribe link (one newsletter, or all when None)."""
    if newsletter_id is None:
        return manage_token(settings, subscriber_id, token_version)
    claim = ManageClaim(subscriber_id, token_version, newsletter_id)
    return make_manage_token(settings.secret_key, claim)


def unsubscribe_url(
    settings: Settings, subscriber_id: int, token_version: int, newsletter_id: int | None
) -> str:
    """The https URL for List-Unsubscribe and the unsubscribe link in every mail."""
    token = unsubscribe_token(settings, subscriber_id, token_version, newsletter_id)
    return absolute(settings, f"/unsubscribe/{token}")


def unsubscribe_mailto(settings: Settings, token: str) -> str:
    """The mailto alternative in List-Unsubscribe; the subject carries the same token."""
    return f"mailto:{settings.unsubscribe_address}?subject=unsubscribe-{token}"
