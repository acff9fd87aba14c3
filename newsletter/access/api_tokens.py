"""Bearer tokens for the JSON API: shown once when created, stored only as SHA-256, and scoped."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.access.roles import role_allows
from newsletter.store.db import utcnow
from newsletter.store.models import ApiToken, User

PREFIX = "nlt_"

# What a token may do. The names are a contract (routes, the CLI, the README and other work
# name them), so they live here only; a route names the one scope it needs.
SCOPES: Mapping[str, str] = MappingProxyType(
    {
        "posts:write": "push posts from the CMS and retract them",
        "posts:read": "list the posts the service holds",
        "feeds:read": "list the feeds posts are ingested from, with their health",
        "feeds:write": "add and remove feeds",
        "issues:read": "list and show issues, their progress and previews",
        "issues:write": "create and edit drafts (digests and campaigns)",
        "issues:send": "send, pause, resume, cancel, resend failed, hold, release, test-send",
        "schedules:read": "list schedules",
        "schedules:write": "create, change and delete schedules",
        "subscribers:read": (
            "list, search and show readers (with their consent records: IP and browser "
            "included), an issue's deliveries reader by reader, and the suppression list"
        ),
        "subscribers:write": (
            "add, edit, unsubscribe and erase readers; add addresses to the suppression list"
        ),
        "newsletters:read": "list and show newsletters",
        "newsletters:write": "create and change newsletters",
        "inbound:write": "deliver inbound mail (bounces, complaints, unsubscribes) by webhook",
        "metrics:read": "scrape /metrics",
        "webhooks:read": "list outbound webhook endpoints and their deliveries",
        "webhooks:write": "register, change, test and remove outbound webhook endpoints",
    }
)
# Shorthand for every scope known when the token is created; it is stored expanded, so a scope
# added later is never granted to an old token by surprise.
ALL = "all"


class ScopeError(ValueError):
    """A token was asked for with no scope or an unknown one."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def scope_list() -> str:
    """Every scope with its description, one a line (for help and error messages)."""
    width = max(len(name) for name in SCOPES)
    return "\n".join(f"  {name.ljust(width)}  {text}" for name, text in SCOPES.items())


def normalise_scopes(requested: Iterable[str]) -> list[str]:
    """The scopes asked for, ``all`` expanded, in SCOPES order; ScopeError if none or unknown."""
    wanted = {name.strip() for name in requested}
    unknown = sorted(wanted - set(SCOPES) - {ALL})
    if unknown:
        raise ScopeError(f"unknown scope {unknown[0]!r}; the scopes are:\n{scope_list()}")
    if not wanted:
        raise ScopeError(f"a token needs at least one scope; the scopes are:\n{scope_list()}")
    return [name for name in SCOPES if ALL in wanted or name in wanted]


def scopes_for_owner(user: User, requested: Iterable[str]) -> list[str]:
    """The scopes asked for a token of ``user``: ``all`` means all their role allows; a scope
    beyond their role is a ScopeError that names it and the role."""
    wanted = list(requested)
    granted = normalise_scopes(wanted)
    if ALL in {name.strip() for name in wanted}:
        return [name for name in granted if role_allows(user.role, name)]
    beyond = [name for name in granted if not role_allows(user.role, name)]
    if beyond:
        raise ScopeError(
            f"{user.email} is a {user.role.value}, whose tokens cannot have "
            f"{', '.join(beyond)}; leave {'it' if len(beyond) == 1 else 'them'} out "
            "or change the user's role first"
        )
    return granted


def create_token(
    session: Session, name: str, scopes: Iterable[str], *, user: User | None = None
) -> tuple[ApiToken, str]:
    """Create a token named ``name`` allowed ``scopes`` (owned by ``user``, never beyond their
    role, when given); return the row and the plaintext."""
    if not name.strip():
        raise ValueError("a token needs a name, e.g. 'cms' or 'editor-console'")
    granted = normalise_scopes(scopes) if user is None else scopes_for_owner(user, scopes)
    plaintext = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name.strip(),
        token_hash=_digest(plaintext),
        scopes=" ".join(granted),
        user_id=user.id if user is not None else None,
    )
    session.add(row)
    session.flush()
    return row, plaintext


def token_scopes(token: ApiToken) -> list[str]:
    """The scopes a token was granted, in SCOPES order."""
    return token.scopes.split()


def has_scope(token: ApiToken, scope: str) -> bool:
    """True when ``token`` was granted ``scope`` and its owner's role (if any) allows it now."""
    if scope not in token_scopes(token):
        return False
    return token.user is None or role_allows(token.user.role, scope)


def authenticate(session: Session, presented: str) -> ApiToken | None:
    """The live token matching ``presented``, or None. Records when it was last used."""
    if not presented.startswith(PREFIX) or len(presented) > 200:
        return None
    digest = _digest(presented)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    # The lookup is by hash, so timing reveals nothing useful; compare anyway for clarity.
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    if row.user is not None and row.user.disabled_at is not None:
        return None  # a disabled user's tokens stop with their account
    row.last_used_at = utcnow()
    return row


def revoke_token(session: Session, token_id: int) -> bool:
    """Revoke a token by id; False when there is no such live token."""
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def list_tokens(session: Session) -> list[ApiToken]:
    """All tokens, newest first."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id.desc())))
