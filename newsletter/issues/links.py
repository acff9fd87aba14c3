"""Signed links to an issue's public web version and to an editor's short-lived preview.

The archive token is an issue id signed with its own salt: unguessable, never expiring (a mail's
"view in browser" link must keep working). The preview token names a newsletter and frequency
cohort and expires after an hour, because it shows unpublished content.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from newsletter.readers.links import absolute
from newsletter.readers.tokens import TokenError
from newsletter.settings import Settings

ARCHIVE_SALT = "newsletter.archive.v1"
PREVIEW_SALT = "newsletter.preview.v1"
PREVIEW_MAX_AGE_SECONDS = 3600


def archive_token(settings: Settings, issue_id: int) -> str:
    """The opaque token behind an issue's public web version."""
    return URLSafeSerializer(settings.secret_key, salt=ARCHIVE_SALT).dumps(int(issue_id))


def read_archive_token(settings: Settings, token: str) -> int:
    """The issue id an archive token names, or :class:`TokenError` when forged."""
    try:
        value = URLSafeSerializer(settings.secret_key, salt=ARCHIVE_SALT).loads(token)
    except BadSignature as exc:
        raise TokenError("This link is not valid.") from exc
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenError("This link is not valid.")
    return value


def archive_url(settings: Settings, issue_id: int) -> str:
    """The "view in browser" address of an issue, as mailed to its readers."""
    return absolute(settings, f"/archive/{archive_token(settings, issue_id)}")


@dataclass(frozen=True)
class PreviewClaim:
    """What a preview link shows: the next digest (or draft) of a newsletter for a cohort."""

    newsletter_slug: str
    frequency: str | None


def preview_token(settings: Settings, newsletter_slug: str, frequency: str | None) -> str:
    """A signed token for the editor's preview page, valid for an hour."""
    serializer = URLSafeTimedSerializer(settings.secret_key, salt=PREVIEW_SALT)
    return serializer.dumps([newsletter_slug, frequency])


def read_preview_token(
    settings: Settings, token: str, max_age: int = PREVIEW_MAX_AGE_SECONDS
) -> PreviewClaim:
    """Verify a preview token; :class:`TokenError` (``expired`` set) when too old or forged."""
    serializer = URLSafeTimedSerializer(settings.secret_key, salt=PREVIEW_SALT)
    try:
        value = serializer.loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise TokenError("This preview link has expired.", expired=True) from exc
    except BadSignature as exc:
        raise TokenError("This preview link is not valid.") from exc
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], str)
        or not (value[1] is None or isinstance(value[1], str))
    ):
        raise TokenError("This preview link is not valid.")
    return PreviewClaim(value[0], value[1])


def preview_url(settings: Settings, newsletter_slug: str, frequency: str | None = None) -> str:
    """The editor's preview page for a newsletter's next digest (expires after an hour)."""
    return absolute(settings, f"/preview/{preview_token(settings, newsletter_slug, frequency)}")
