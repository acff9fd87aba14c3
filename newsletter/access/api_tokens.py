"""Bearer tokens for the JSON API: shown once when created, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.store.db import utcnow
from newsletter.store.models import ApiToken

PREFIX = "nlt_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str) -> tuple[ApiToken, str]:
    """Create a token named ``name``; return the row and the plaintext (shown only now)."""
    if not name.strip():
        raise ValueError("a token needs a name, e.g. 'cms' or 'editor-console'")
    plaintext = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name.strip(), token_hash=_digest(plaintext))
    session.add(row)
    session.flush()
    return row, plaintext


def authenticate(session: Session, presented: str) -> ApiToken | None:
    """The live token matching ``presented``, or None. Records when it was last used."""
    if not presented.startswith(PREFIX) or len(presented) > 200:
        return None
    digest = _digest(presented)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    # The lookup is by hash, so timing reveals nothing useful; compare anyway for clarity.
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
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
