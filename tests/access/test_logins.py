"""Logins: a wrong password counts, the fifth locks the account for a while, a right one resets."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy.orm import Session

from newsletter.access.logins import Outcome, check_code, check_password
from newsletter.access.roles import Role
from newsletter.access.totp import begin_enrolment, confirm_enrolment
from newsletter.access.users import disable_user
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from tests.support.console import PASSWORD, make_user
from tests.support.totp import code_at

EMAIL = "ann@example.com"


def test_the_fifth_failure_locks_even_the_right_password_until_the_lock_ends(
    db: Session, settings: Settings
) -> None:
    user = make_user(db, EMAIL, Role.EDITOR)
    now = utcnow()
    for attempt in range(1, 5):
        assert check_password(db, settings, EMAIL, "wrong", now=now).outcome is Outcome.REFUSED
        assert user.failed_logins == attempt and user.locked_until is None
    assert check_password(db, settings, EMAIL, "wrong", now=now).outcome is Outcome.REFUSED
    assert user.locked_until == now + timedelta(minutes=15)

    locked = check_password(db, settings, EMAIL, PASSWORD, now=now + timedelta(minutes=14))
    assert locked.outcome is Outcome.REFUSED and locked.user is None
    later = check_password(db, settings, EMAIL, PASSWORD, now=now + timedelta(minutes=15))
    assert later.outcome is Outcome.OK and later.user is user
    assert user.failed_logins == 0 and user.locked_until is None


def test_the_limits_are_settings(db: Session, settings: Settings) -> None:
    strict = replace(settings, console_login_max_failures=2, console_lockout_minutes=60)
    user = make_user(db, EMAIL, Role.EDITOR)
    now = utcnow()
    check_password(db, strict, EMAIL, "wrong", now=now)
    check_password(db, strict, EMAIL, "wrong", now=now)
    assert user.locked_until == now + timedelta(minutes=60)


def test_a_right_password_resets_the_count(db: Session, settings: Settings) -> None:
    user = make_user(db, EMAIL, Role.EDITOR)
    for _ in range(4):
        check_password(db, settings, EMAIL, "wrong")
    assert check_password(db, settings, EMAIL, PASSWORD).outcome is Outcome.OK
    assert user.failed_logins == 0


def test_a_disabled_account_is_told_so_only_with_the_right_password(
    db: Session, settings: Settings
) -> None:
    make_user(db, "admin@example.com", Role.ADMIN)
    user = make_user(db, EMAIL, Role.EDITOR)
    disable_user(db, user)
    db.commit()
    assert check_password(db, settings, EMAIL, "wrong").outcome is Outcome.REFUSED
    assert check_password(db, settings, EMAIL, PASSWORD).outcome is Outcome.DISABLED


def test_with_totp_the_password_leaves_a_code_due_and_wrong_codes_count(
    db: Session, settings: Settings
) -> None:
    user = make_user(db, EMAIL, Role.EDITOR)
    now = utcnow()
    secret = begin_enrolment(user)
    earlier = now - timedelta(minutes=5)
    assert confirm_enrolment(db, user, code_at(secret, earlier), now=earlier)
    db.commit()
    first = check_password(db, settings, EMAIL, PASSWORD, now=now)
    assert first.outcome is Outcome.OK and first.totp_due and user.last_login_at is None
    assert check_code(db, settings, user, "000000", now=now).outcome is Outcome.REFUSED
    assert user.failed_logins == 1
    assert check_code(db, settings, user, code_at(secret, now), now=now).outcome is Outcome.OK
    assert user.failed_logins == 0 and user.last_login_at == now
