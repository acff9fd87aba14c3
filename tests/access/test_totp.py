"""TOTP: enrolment confirmed by a code, a window of one step either side, each code once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from newsletter.access.roles import Role
from newsletter.access.totp import (
    TotpError,
    begin_enrolment,
    confirm_enrolment,
    disable_totp,
    provisioning_uri,
    qr_svg,
    verify_code,
)
from newsletter.settings import Settings
from newsletter.store.db import get_sessionmaker, utcnow
from newsletter.store.models import User
from tests.support.console import make_user
from tests.support.totp import code_at


@pytest.fixture
def enrolled(db: Session) -> tuple[User, str]:
    user = make_user(db, "ann@example.com", Role.EDITOR)
    secret = begin_enrolment(user)
    now = utcnow() - timedelta(minutes=5)
    assert confirm_enrolment(db, user, code_at(secret, now), now=now)
    db.commit()
    return user, secret


def test_enrolment_needs_a_code_from_the_secret_shown(db: Session) -> None:
    user = make_user(db, "bo@example.com", Role.VIEWER)
    secret = begin_enrolment(user)
    uri = provisioning_uri(secret, user.email, "The Daily Brief")
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    svg = qr_svg(uri, "QR <code>")
    assert svg.startswith("<svg") and "<title>QR &lt;code&gt;</title>" in svg
    stale = code_at(secret, utcnow() - timedelta(hours=1))
    assert not confirm_enrolment(db, user, stale)
    assert user.totp_secret == "" and user.totp_pending_secret == secret
    assert confirm_enrolment(db, user, code_at(secret, utcnow()))
    assert user.totp_secret == secret and user.totp_pending_secret == ""


def test_a_code_is_good_one_step_either_side_and_not_beyond(
    db: Session, enrolled: tuple[User, str]
) -> None:
    user, secret = enrolled
    now = utcnow()
    assert not verify_code(db, user, code_at(secret, now - timedelta(seconds=95)), now=now)
    assert not verify_code(db, user, code_at(secret, now + timedelta(seconds=95)), now=now)
    assert verify_code(db, user, code_at(secret, now - timedelta(seconds=30)), now=now)
    assert verify_code(db, user, code_at(secret, now + timedelta(seconds=30)), now=now)


def test_a_code_used_once_is_refused_again_and_so_are_older_ones(
    db: Session, enrolled: tuple[User, str]
) -> None:
    user, secret = enrolled
    now = utcnow()
    code = code_at(secret, now)
    assert verify_code(db, user, f" {code[:3]} {code[3:]} ", now=now)  # spaces are forgiven
    assert not verify_code(db, user, code, now=now)
    assert not verify_code(db, user, code_at(secret, now - timedelta(seconds=30)), now=now)
    assert verify_code(db, user, code_at(secret, now + timedelta(seconds=30)), now=now)


def test_a_replay_from_another_process_is_refused(
    db: Session, settings: Settings, enrolled: tuple[User, str]
) -> None:
    user, secret = enrolled
    now = utcnow()
    code = code_at(secret, now)
    other = get_sessionmaker(settings.database_url)()
    try:
        # The other process loaded the user before the code was used here.
        twin = other.get(User, user.id)
        assert twin is not None
        assert verify_code(db, user, code, now=now)
        db.commit()
        assert not verify_code(other, twin, code, now=now)
    finally:
        other.close()


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5a"])
def test_malformed_codes_are_refused(db: Session, enrolled: tuple[User, str], code: str) -> None:
    assert not verify_code(db, enrolled[0], code)


def test_totp_can_be_turned_off_unless_an_admin_requires_it(
    db: Session, enrolled: tuple[User, str]
) -> None:
    user, _ = enrolled
    user.totp_required = True
    with pytest.raises(TotpError, match="requires a second factor"):
        disable_totp(user)
    user.totp_required = False
    disable_totp(user)
    assert user.totp_secret == "" and user.totp_last_step is None
