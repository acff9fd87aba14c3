"""argon2id passwords: verified, upgraded when the parameters change, and rules for new ones."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from newsletter.access.logins import Outcome, check_password
from newsletter.access.passwords import (
    PasswordError,
    check_new_password,
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)
from newsletter.access.roles import Role
from newsletter.settings import Settings
from tests.support.console import PASSWORD, make_user


def test_a_hash_is_argon2id_salted_and_verifies_only_its_password() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first.startswith("$argon2id$") and first != second  # a new salt each time
    assert verify_password(first, PASSWORD)
    assert not verify_password(first, PASSWORD + "!")
    assert not verify_password("not a hash", PASSWORD)
    assert not verify_password(first, "x" * 5000)  # over the length bound: refused unhashed
    assert not needs_rehash(first)


def test_a_hash_made_with_old_parameters_is_upgraded_at_the_next_login(
    db: Session, settings: Settings
) -> None:
    user = make_user(db, "ann@example.com", Role.EDITOR)
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    user.password_hash = hash_password(PASSWORD, weak)
    db.commit()
    assert needs_rehash(user.password_hash)

    result = check_password(db, settings, "ann@example.com", PASSWORD)
    db.commit()
    assert result.outcome is Outcome.OK
    db.refresh(user)
    assert not needs_rehash(user.password_hash)
    assert verify_password(user.password_hash, PASSWORD)


def test_an_unknown_address_still_costs_a_verification_and_is_refused(
    db: Session, settings: Settings
) -> None:
    dummy_verify(PASSWORD)  # runs a real argon2 check against a throwaway hash, raising nothing
    assert check_password(db, settings, "nobody@example.com", PASSWORD).outcome is Outcome.REFUSED


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "at least 12 characters"),
        (" " * 14, "only spaces"),
        ("ann@example.com", "email address"),
        ("x" * 2000, "at most 1024"),
    ],
)
def test_new_passwords_must_be_long_enough_and_not_the_address(password: str, message: str) -> None:
    with pytest.raises(PasswordError, match=message):
        check_new_password(password, email="Ann@example.com")
    assert check_new_password(PASSWORD, email="ann@example.com") == PASSWORD
