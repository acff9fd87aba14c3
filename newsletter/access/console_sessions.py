"""Server-side console sessions: the browser's cookie holds a random id, the row its SHA-256.

A session ends after ``console_session_idle_hours`` without a request, at ``expires_at``
(``console_session_max_days`` after its login), when it is revoked, or when its user is
disabled; one still waiting for its TOTP code, ten minutes after the password was given.
Every login makes a new id (:func:`start_session`), so an id planted in a browser before the
login is worth nothing afterwards (no session fixation).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import ConsoleSession, User

# Writing last_seen_at on every request would make each page view a write; a minute of
# slack on a 12-hour idle limit changes nothing.
TOUCH_EVERY = timedelta(minutes=1)
# A session waiting for its TOTP code (password given) is good for this long only.
CODE_STEP_LIFETIME = timedelta(minutes=10)
MAX_TOKEN_LENGTH = 100


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    session: Session,
    settings: Settings,
    user: User,
    *,
    user_agent: str = "",
    ip: str = "",
    totp_pending: bool = False,
    now: datetime | None = None,
) -> tuple[ConsoleSession, str]:
    """A new session for ``user``; returns the row and the id for the cookie (shown only here)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    row = ConsoleSession(
        token_hash=_digest(token),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(days=settings.console_session_max_days),
        totp_pending=totp_pending,
        user_agent=user_agent[:500],
        ip=ip[:64],
    )
    session.add(row)
    session.flush()
    return row, token


def is_live(settings: Settings, row: ConsoleSession, now: datetime) -> bool:
    """True while ``row`` is neither revoked, nor past its end, nor idle too long."""
    idle_end = row.last_seen_at + timedelta(hours=settings.console_session_idle_hours)
    if row.totp_pending:
        idle_end = min(idle_end, row.created_at + CODE_STEP_LIFETIME)
    return row.revoked_at is None and now < row.expires_at and now < idle_end


def load_session(
    session: Session, settings: Settings, token: str, *, now: datetime | None = None
) -> ConsoleSession | None:
    """The live session the cookie ``token`` names, its user enabled; None otherwise.

    Records the request as the session's last sign of life (at most once a minute).
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    now = now or utcnow()
    row = session.scalar(select(ConsoleSession).where(ConsoleSession.token_hash == _digest(token)))
    if row is None or not is_live(settings, row, now) or row.user.disabled_at is not None:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return row


def upgrade_session(
    session: Session, settings: Settings, row: ConsoleSession, *, now: datetime | None = None
) -> tuple[ConsoleSession, str]:
    """Replace a session whose TOTP code was just given by a full one with a new id."""
    now = now or utcnow()
    row.revoked_at = now
    return start_session(session, settings, row.user, user_agent=row.user_agent, ip=row.ip, now=now)


def revoke_session(session: Session, user_id: int, session_id: int) -> bool:
    """Revoke one of ``user_id``'s sessions; False when it is not theirs or already over."""
    done = session.execute(
        update(ConsoleSession)
        .where(
            ConsoleSession.id == session_id,
            ConsoleSession.user_id == user_id,
            ConsoleSession.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def revoke_all(session: Session, user_id: int, *, keep: int | None = None) -> int:
    """Revoke every live session of ``user_id`` (but ``keep``); returns how many."""
    statement = update(ConsoleSession).where(
        ConsoleSession.user_id == user_id, ConsoleSession.revoked_at.is_(None)
    )
    if keep is not None:
        statement = statement.where(ConsoleSession.id != keep)
    done = session.execute(statement.values(revoked_at=utcnow()))
    return int(done.rowcount)  # type: ignore[attr-defined]


def live_sessions(
    session: Session, settings: Settings, user_id: int, *, now: datetime | None = None
) -> list[ConsoleSession]:
    """``user_id``'s sessions still in use, most recently seen first."""
    now = now or utcnow()
    rows = session.scalars(
        select(ConsoleSession)
        .where(
            ConsoleSession.user_id == user_id,
            ConsoleSession.revoked_at.is_(None),
            ConsoleSession.expires_at > now,
        )
        .order_by(ConsoleSession.last_seen_at.desc())
    )
    return [row for row in rows if is_live(settings, row, now)]
