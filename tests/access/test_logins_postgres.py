"""On PostgreSQL, with attempts at the same moment from many processes' worth of sessions: the
failure count loses no attempt, and a TOTP code is accepted once however many try it at once."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from newsletter.access.logins import Outcome, check_password
from newsletter.access.roles import Role
from newsletter.access.totp import begin_enrolment, confirm_enrolment, verify_code
from newsletter.access.users import create_user
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, get_sessionmaker, utcnow
from newsletter.store.models import User
from tests.support.console import PASSWORD
from tests.support.services import migrated_postgres_database
from tests.support.totp import code_at

EMAIL = "ann@example.com"


@pytest.fixture
def pg_settings(settings: Settings) -> Iterator[Settings]:
    """Settings on a fresh PostgreSQL database with one account, ten failures to a lock."""
    with migrated_postgres_database() as url:
        pg = replace(settings, database_url=url, console_login_max_failures=10)
        with get_sessionmaker(url)() as db:
            create_user(db, EMAIL, Role.EDITOR, password=PASSWORD)
            db.commit()
        yield pg
        dispose_engines()


def user_row(settings: Settings) -> User:
    with get_sessionmaker(settings.database_url)() as db:
        user = db.scalars(select(User)).one()
        db.expunge(user)
        return user


def test_simultaneous_wrong_passwords_are_all_counted(pg_settings: Settings) -> None:
    factory = get_sessionmaker(pg_settings.database_url)

    def attempt(_: int) -> Outcome:
        with factory() as db:
            return check_password(db, pg_settings, EMAIL, "wrong").outcome

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(attempt, range(6)))
    assert outcomes == [Outcome.REFUSED] * 6
    assert user_row(pg_settings).failed_logins == 6  # no attempt lost to a race


def test_one_code_tried_at_once_by_many_is_accepted_once(pg_settings: Settings) -> None:
    factory = get_sessionmaker(pg_settings.database_url)
    earlier = utcnow() - timedelta(minutes=5)
    with factory() as db:
        user = db.scalars(select(User)).one()
        secret = begin_enrolment(user)
        assert confirm_enrolment(db, user, code_at(secret, earlier), now=earlier)
        db.commit()
    now = utcnow()
    code = code_at(secret, now)

    def attempt(_: int) -> bool:
        with factory() as db:
            user = db.scalars(select(User)).one()
            accepted = verify_code(db, user, code, now=now)
            db.commit()
            return accepted

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(attempt, range(6)))
    assert results.count(True) == 1
