"""API tokens: scopes granted at creation, checked on use; refusals store nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.access.api_tokens import (
    SCOPES,
    ScopeError,
    authenticate,
    create_token,
    has_scope,
    token_scopes,
)
from newsletter.access.roles import Role
from newsletter.access.users import disable_user, set_role
from newsletter.store.models import ApiToken
from tests.support.console import make_user

CONTRACT = {
    "posts:write",
    "posts:read",
    "feeds:read",
    "feeds:write",
    "issues:read",
    "issues:write",
    "issues:send",
    "schedules:read",
    "schedules:write",
    "subscribers:read",
    "subscribers:write",
    "newsletters:read",
    "newsletters:write",
    "inbound:write",
    "metrics:read",
    "webhooks:read",
    "webhooks:write",
}


README = Path(__file__).parents[2] / "README.md"


def tokens_stored(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(ApiToken)) or 0


def test_the_scopes_are_the_contract_each_with_a_one_line_description() -> None:
    assert set(SCOPES) == CONTRACT
    assert all(text and "\n" not in text for text in SCOPES.values())
    with pytest.raises(TypeError):
        SCOPES["admin"] = "everything"  # type: ignore[index]


def test_the_readme_documents_every_scope_in_its_table() -> None:
    rows = [line for line in README.read_text().splitlines() if line.startswith("| `")]
    documented = {line.split("`")[1] for line in rows}
    assert set(SCOPES) | {"all"} <= documented


def test_a_token_has_exactly_the_scopes_it_was_created_with(db: Session) -> None:
    _, plaintext = create_token(db, "cms", ["posts:read", "posts:write", "posts:write"])
    db.commit()
    row = authenticate(db, plaintext)
    assert row is not None
    assert token_scopes(row) == ["posts:write", "posts:read"]  # SCOPES order, no repeats
    assert has_scope(row, "posts:write")
    assert not has_scope(row, "issues:send")


def test_all_expands_to_every_scope_known_now(db: Session) -> None:
    row, _ = create_token(db, "console", ["all"])
    assert token_scopes(row) == list(SCOPES)
    assert row.scopes == " ".join(SCOPES)  # stored expanded: a later scope is not granted


@pytest.mark.parametrize(
    ("scopes", "message"),
    [
        ([], "needs at least one scope"),
        (["posts:wirte"], "unknown scope 'posts:wirte'"),
        (["posts:write", "admin"], "unknown scope 'admin'"),
        ([""], "unknown scope ''"),
    ],
)
def test_no_scope_or_an_unknown_one_is_refused_and_nothing_stored(
    db: Session, scopes: list[str], message: str
) -> None:
    with pytest.raises(ScopeError, match=message) as refused:
        create_token(db, "cms", scopes)
    assert "issues:send" in str(refused.value)  # the message lists the scopes
    assert tokens_stored(db) == 0


def test_a_token_stored_without_scopes_may_do_nothing(db: Session) -> None:
    db.add(ApiToken(name="legacy", token_hash="0" * 64))
    db.commit()
    row = db.scalars(select(ApiToken)).one()
    assert token_scopes(row) == []
    assert not any(has_scope(row, scope) for scope in SCOPES)


# --- tokens owned by a console user --------------------------------------------------------------


def test_a_users_token_cannot_be_created_beyond_their_role(db: Session) -> None:
    viewer = make_user(db, "vi@example.com", Role.VIEWER)
    with pytest.raises(ScopeError, match=r"vi@example\.com is a viewer.*posts:write"):
        create_token(db, "cms", ["posts:read", "posts:write"], user=viewer)
    assert tokens_stored(db) == 0
    row, _ = create_token(db, "reader", ["all"], user=viewer)  # all: all a viewer may
    assert token_scopes(row) == [scope for scope in SCOPES if scope.endswith(":read")]
    assert row.user_id == viewer.id


def test_a_token_follows_its_owners_role_now_and_stops_with_the_account(db: Session) -> None:
    make_user(db, "admin@example.com", Role.ADMIN)
    editor = make_user(db, "ed@example.com", Role.EDITOR)
    row, plaintext = create_token(db, "script", ["posts:write", "posts:read"], user=editor)
    db.commit()
    assert has_scope(row, "posts:write")
    set_role(db, editor, Role.VIEWER)  # demoted: the write scope is gone at once
    db.commit()
    token = authenticate(db, plaintext)
    assert token is not None and not has_scope(token, "posts:write")
    assert has_scope(token, "posts:read")
    disable_user(db, editor)
    db.commit()
    assert authenticate(db, plaintext) is None


def test_a_viewers_token_created_with_write_scopes_still_cannot_write(db: Session) -> None:
    # Made before the owner was a viewer (or written to the table by hand): the role still rules.
    make_user(db, "admin@example.com", Role.ADMIN)
    user = make_user(db, "vi@example.com", Role.EDITOR)
    row, _ = create_token(db, "old", ["issues:send"], user=user)
    user.role = Role.VIEWER
    db.commit()
    assert not has_scope(row, "issues:send")


def test_a_token_without_owner_keeps_its_scopes(db: Session) -> None:
    row, _ = create_token(db, "ops", ["issues:send"])
    assert row.user_id is None and has_scope(row, "issues:send")
