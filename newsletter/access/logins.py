"""Console logins: password then (when enrolled) a TOTP code, with a lockout kept in the database.

``console_login_max_failures`` wrong passwords or codes in a row lock the account for
``console_lockout_minutes``. The count lives on the user row and is raised by one UPDATE, so
every web process sees the same count and two at once cannot both get an extra try. The web
adds a per-IP rate limit on top (across accounts).

Whatever went wrong, the answer a caller shows is the same (:data:`REFUSED`): an unknown address,
a wrong password and a locked account look alike from outside, and an unknown address costs one
argon2 verification like a known one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, update
from sqlalchemy.orm import Session

from newsletter.access.passwords import (
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)
from newsletter.access.totp import verify_code
from newsletter.access.users import find_user
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import User


class Outcome(enum.Enum):
    """What one login step came to."""

    OK = "ok"  # signed in (or, after the password, a code is due: see LoginResult.totp_due)
    REFUSED = "refused"  # unknown address, wrong password or code, or locked
    DISABLED = "disabled"  # right password, but the account is disabled


@dataclass(frozen=True)
class LoginResult:
    """The outcome, the user when known to be who they say, and whether a code is still due."""

    outcome: Outcome
    user: User | None = None
    totp_due: bool = False


def refused_message(settings: Settings) -> str:
    """The one message for every refused login: it tells nobody which part was wrong."""
    return (
        "That email address and password do not match an account, or the account is locked "
        f"for {settings.console_lockout_minutes} minutes after "
        f"{settings.console_login_max_failures} failed attempts."
    )


def is_locked(user: User, now: datetime) -> bool:
    """True while ``user`` is locked out after too many failures."""
    return user.locked_until is not None and now < user.locked_until


def record_failure(session: Session, settings: Settings, user: User, now: datetime) -> None:
    """Count one failed attempt; the one that reaches the limit locks the account. Commits."""
    reached = User.failed_logins + 1 >= settings.console_login_max_failures
    lock_end = now + timedelta(minutes=settings.console_lockout_minutes)
    session.execute(
        update(User)
        .where(User.id == user.id)
        .values(
            failed_logins=case((reached, 0), else_=User.failed_logins + 1),
            locked_until=case((reached, lock_end), else_=User.locked_until),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    session.refresh(user)


def _succeeded(user: User, now: datetime) -> None:
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now


def check_password(
    session: Session,
    settings: Settings,
    email: str,
    password: str,
    *,
    now: datetime | None = None,
) -> LoginResult:
    """The first step: is ``password`` right for ``email``, and may that account log in now?

    Counts a failure (committing it) when the account exists; rehashes an outdated hash.
    """
    now = now or utcnow()
    user = find_user(session, email)
    if user is None:
        dummy_verify(password)
        return LoginResult(Outcome.REFUSED)
    if is_locked(user, now):
        dummy_verify(password)  # the same time as a wrong password: the lock is not revealed
        return LoginResult(Outcome.REFUSED)
    if not verify_password(user.password_hash, password):
        record_failure(session, settings, user, now)
        return LoginResult(Outcome.REFUSED)
    if user.disabled_at is not None:
        return LoginResult(Outcome.DISABLED)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    totp_due = bool(user.totp_secret)
    if not totp_due:
        _succeeded(user, now)
    return LoginResult(Outcome.OK, user, totp_due=totp_due)


def check_code(
    session: Session, settings: Settings, user: User, code: str, *, now: datetime | None = None
) -> LoginResult:
    """The second step: the TOTP code of a user whose password was right (counts failures)."""
    now = now or utcnow()
    if user.disabled_at is not None:
        return LoginResult(Outcome.DISABLED)
    if is_locked(user, now) or not verify_code(session, user, code, now=now):
        if not is_locked(user, now):
            record_failure(session, settings, user, now)
        return LoginResult(Outcome.REFUSED)
    _succeeded(user, now)
    return LoginResult(Outcome.OK, user)
