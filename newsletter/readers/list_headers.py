"""List headers every mail to a subscriber carries (RFC 2369, RFC 2919, RFC 8058)."""

from __future__ import annotations

from newsletter.mail.compose import list_id
from newsletter.readers import links
from newsletter.readers.tokens import ManageClaim
from newsletter.settings import Settings


def list_headers(
    settings: Settings,
    claim: ManageClaim,
    *,
    newsletter_slug: str,
    newsletter_name: str,
) -> dict[str, str]:
    """List-Id, List-Unsubscribe (https + mailto) and List-Unsubscribe-Post for one reader.

    With the claim's ``newsletter_id`` the one-click link leaves that newsletter only; with None,
    all of them.
    """
    token = links.unsubscribe_token(settings, claim)
    https = links.absolute(settings, f"/unsubscribe/{token}")
    mailto = links.unsubscribe_mailto(settings, token)
    return {
        "List-Id": list_id(settings, newsletter_slug, newsletter_name),
        "List-Unsubscribe": f"<{https}>, <{mailto}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
