"""Console accounts: create, find, list, change role, disable and enable, require TOTP.

Addresses are stored lower-case, so ``Ann@Example.com`` and ``ann@example.com`` are one account.
The last enabled admin can be neither demoted nor disabled: someone must be able to manage users.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.access.console_sessions import revoke_all
from newsletter.access.passwords import check_new_password, hash_password, one_time_password
from newsletter.access.roles import Role
from newsletter.store.db import utcnow
from newsletter.store.models import User

MAX_EMAIL_LENGTH = 320
NAME_MAX = 200


class UserError(ValueError):
    """A refused change to an account; the message says why and what to do."""


class UserNotFound(UserError):
    """No account has this address."""


def normalise_email(email: str) -> str:
    """The address as an account key: checked for shape (no DNS) and lower-cased."""
    value = email.strip()
    if not value or len(value) > MAX_EMAIL_LENGTH:
        raise UserError("an account needs an email address such as editor@example.com")
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise UserError(f"{value!r} is not an email address: {exc}") from None
    return checked.normalized.lower()


def find_user(session: Session, email: str) -> User | None:
    """The account with this address (any case), or None; a malformed address finds nobody."""
    try:
        key = normalise_email(email)
    except UserError:
        return None
    return session.scalar(select(User).where(User.email == key))


def get_user(session: Session, email: str) -> User:
    """The account with this address, or UserNotFound pointing at `users list`."""
    user = find_user(session, email)
    if user is None:
        raise UserNotFound(f"no account for {email.strip()!r}; see `newsletter users list`")
    return user


def create_user(
    session: Session, email: str, role: Role, *, name: str = "", password: str | None = None
) -> tuple[User, str | None]:
    """A new account; without ``password`` one is made up, returned once and must be changed.

    Returns the row and the one-time password (None when ``password`` was given).
    """
    key = normalise_email(email)
    if session.scalar(select(User.id).where(User.email == key)) is not None:
        raise UserError(f"there is already an account for {key}")
    if len(name.strip()) > NAME_MAX:
        raise UserError(f"a display name has at most {NAME_MAX} characters")
    one_time = None
    if password is None:
        one_time = password = one_time_password()
    else:
        check_new_password(password, email=key)
    user = User(
        email=key,
        display_name=name.strip(),
        password_hash=hash_password(password),
        must_change_password=one_time is not None,
        role=role,
    )
    session.add(user)
    session.flush()
    return user, one_time


def list_users(session: Session) -> list[User]:
    """Every account, by address."""
    return list(session.scalars(select(User).order_by(User.email)))


def _other_enabled_admins(session: Session, user: User) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == Role.ADMIN, User.disabled_at.is_(None), User.id != user.id)
    )
    return int(count or 0)


def _keep_an_admin(session: Session, user: User, change: str) -> None:
    if (
        user.role == Role.ADMIN
        and user.disabled_at is None
        and not _other_enabled_admins(session, user)
    ):
        raise UserError(
            f"{user.email} is the only enabled admin; make another admin before you {change}"
        )


def set_role(session: Session, user: User, role: Role) -> User:
    """Give ``user`` another role, at once (their API tokens follow it on their next request)."""
    if role != Role.ADMIN:
        _keep_an_admin(session, user, "take this one's admin role")
    user.role = role
    return user


def disable_user(session: Session, user: User) -> int:
    """Disable ``user``: no login, no API token; their sessions end now. Returns how many."""
    _keep_an_admin(session, user, "disable this one")
    if user.disabled_at is None:
        user.disabled_at = utcnow()
    return revoke_all(session, user.id)


def enable_user(user: User) -> User:
    """Let a disabled ``user`` log in again (with a clean failed-login count)."""
    user.disabled_at = None
    user.failed_logins = 0
    user.locked_until = None
    return user


def require_totp(user: User, required: bool = True) -> User:
    """Make ``user`` give a TOTP code at every login (they enrol at their next one)."""
    user.totp_required = required
    return user


def change_password(session: Session, user: User, new_password: str, *, keep: int | None) -> int:
    """Set a new password and end every other session of ``user``; returns how many ended."""
    check_new_password(new_password, email=user.email)
    user.password_hash = hash_password(new_password)
    user.must_change_password = False
    user.password_changed_at = utcnow()
    return revoke_all(session, user.id, keep=keep)
