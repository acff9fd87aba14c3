"""Console sessions: found by their hashed id; ended by idleness, age, revoking, disabling."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.access.console_sessions import (
    live_sessions,
    load_session,
    revoke_all,
    revoke_session,
    start_session,
)
from newsletter.access.roles import Role
from newsletter.access.users import disable_user
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import ConsoleSession
from tests.support.console import make_user


def test_only_the_hash_of_the_id_is_stored(db: Session, settings: Settings) -> None:
    user = make_user(db, "ann@example.com", Role.VIEWER)
    row, token = start_session(db, settings, user, user_agent="Firefox", ip="10.0.0.1")
    db.commit()
    stored = db.scalars(select(ConsoleSession.token_hash)).all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()] and token not in stored
    assert load_session(db, settings, token) is row
    assert load_session(db, settings, token + "x") is None
    assert load_session(db, settings, "") is None


def test_a_session_ends_after_the_idle_time_and_at_its_absolute_end(
    db: Session, settings: Settings
) -> None:
    user = make_user(db, "ann@example.com", Role.VIEWER)
    start = utcnow()
    _row, token = start_session(db, settings, user, now=start)
    idle = timedelta(hours=settings.console_session_idle_hours)
    assert load_session(db, settings, token, now=start + idle) is None  # idle too long
    # Used every 11 hours, it lives until the absolute end, not a second longer.
    when = start
    end = start + timedelta(days=settings.console_session_max_days)
    while when + timedelta(hours=11) < end:
        when += timedelta(hours=11)
        assert load_session(db, settings, token, now=when) is not None
    assert load_session(db, settings, token, now=end) is None


def test_revoked_sessions_and_those_of_a_disabled_user_are_refused(
    db: Session, settings: Settings
) -> None:
    make_user(db, "admin@example.com", Role.ADMIN)
    ann = make_user(db, "ann@example.com", Role.EDITOR)
    bo = make_user(db, "bo@example.com", Role.EDITOR)
    one, one_token = start_session(db, settings, ann)
    two, two_token = start_session(db, settings, ann)
    _bos, bo_token = start_session(db, settings, bo)
    assert not revoke_session(db, bo.id, one.id)  # not Bo's to revoke
    assert revoke_session(db, ann.id, one.id)
    assert load_session(db, settings, one_token) is None
    assert [row.id for row in live_sessions(db, settings, ann.id)] == [two.id]
    assert revoke_all(db, ann.id, keep=two.id) == 0
    assert load_session(db, settings, two_token) is not None
    disable_user(db, bo)
    db.commit()
    assert load_session(db, settings, bo_token) is None


def test_a_session_waiting_for_its_code_lasts_ten_minutes(db: Session, settings: Settings) -> None:
    user = make_user(db, "ann@example.com", Role.VIEWER)
    start = utcnow()
    _row, token = start_session(db, settings, user, totp_pending=True, now=start)
    assert load_session(db, settings, token, now=start + timedelta(minutes=9)) is not None
    assert load_session(db, settings, token, now=start + timedelta(minutes=10)) is None
