"""Console accounts: addresses lower-cased, duplicates refused, one admin always kept."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from newsletter.access.console_sessions import live_sessions, start_session
from newsletter.access.passwords import verify_password
from newsletter.access.roles import Role
from newsletter.access.users import (
    UserError,
    UserNotFound,
    change_password,
    create_user,
    disable_user,
    enable_user,
    find_user,
    get_user,
    list_users,
    set_role,
)
from newsletter.settings import Settings
from tests.support.console import PASSWORD, make_user


def test_an_address_is_one_account_whatever_its_case(db: Session) -> None:
    user = make_user(db, "  Ann.Lee@Example.COM ", Role.EDITOR)
    assert user.email == "ann.lee@example.com"
    assert find_user(db, "ANN.LEE@example.com") is user
    with pytest.raises(UserError, match=r"already an account for ann\.lee@example\.com"):
        create_user(db, "ann.lee@EXAMPLE.com", Role.VIEWER, password=PASSWORD)
    assert [u.email for u in list_users(db)] == ["ann.lee@example.com"]


@pytest.mark.parametrize("address", ["", "not-an-address", "a@b@c.com", "ann@example.com\nBcc: x"])
def test_a_malformed_address_is_refused_and_finds_nobody(db: Session, address: str) -> None:
    with pytest.raises(UserError):
        create_user(db, address, Role.VIEWER, password=PASSWORD)
    assert find_user(db, address) is None


def test_without_a_password_a_one_time_one_is_made_and_must_be_changed(db: Session) -> None:
    user, one_time = create_user(db, "bo@example.com", Role.ADMIN)
    assert one_time and len(one_time) >= 12
    assert user.must_change_password and verify_password(user.password_hash, one_time)
    change_password(db, user, "a brand new passphrase", keep=None)
    assert not user.must_change_password
    assert verify_password(user.password_hash, "a brand new passphrase")


def test_the_last_enabled_admin_can_be_neither_demoted_nor_disabled(db: Session) -> None:
    admin = make_user(db, "admin@example.com", Role.ADMIN)
    with pytest.raises(UserError, match="only enabled admin"):
        set_role(db, admin, Role.EDITOR)
    with pytest.raises(UserError, match="only enabled admin"):
        disable_user(db, admin)
    make_user(db, "second@example.com", Role.ADMIN)
    set_role(db, admin, Role.VIEWER)
    assert admin.role is Role.VIEWER


def test_disabling_ends_every_session_and_enabling_clears_the_lock(
    db: Session, settings: Settings
) -> None:
    make_user(db, "admin@example.com", Role.ADMIN)
    user = make_user(db, "cy@example.com", Role.EDITOR)
    start_session(db, settings, user)
    start_session(db, settings, user)
    db.commit()
    assert disable_user(db, user) == 2
    db.commit()
    assert user.disabled_at is not None and live_sessions(db, settings, user.id) == []
    user.failed_logins = 3
    enable_user(user)
    assert user.disabled_at is None and user.failed_logins == 0


def test_get_user_says_how_to_find_the_accounts(db: Session) -> None:
    with pytest.raises(UserNotFound, match="newsletter users list"):
        get_user(db, "ghost@example.com")
