"""Roles are a rule over scope names: viewers read, editors do all but admin-only, admins all."""

from __future__ import annotations

import pytest

from newsletter.access.api_tokens import SCOPES
from newsletter.access.roles import Role, RoleError, parse_role, role_allows, role_at_least


def test_a_viewer_gets_exactly_the_read_scopes() -> None:
    allowed = {scope for scope in SCOPES if role_allows(Role.VIEWER, scope)}
    assert allowed == {scope for scope in SCOPES if scope.endswith(":read")}
    assert "posts:write" not in allowed and "issues:send" not in allowed


def test_an_editor_gets_every_current_scope_and_an_admin_every_scope() -> None:
    assert all(role_allows(Role.EDITOR, scope) for scope in SCOPES)
    assert all(role_allows(Role.ADMIN, scope) for scope in SCOPES)


@pytest.mark.parametrize("scope", ["users:write", "users:read", "settings:write", "tokens:write"])
def test_scopes_added_later_fall_under_the_rule_by_their_name(scope: str) -> None:
    assert role_allows(Role.ADMIN, scope)
    assert not role_allows(Role.EDITOR, scope)  # admin-only resources
    assert not role_allows(Role.VIEWER, scope)
    assert role_allows(Role.VIEWER, "subscribers:read")
    assert not role_allows(Role.VIEWER, "subscribers:write")
    assert role_allows(Role.EDITOR, "subscribers:write")


def test_roles_are_ordered_and_parsed_in_any_case() -> None:
    assert role_at_least(Role.ADMIN, Role.EDITOR) and role_at_least(Role.EDITOR, Role.EDITOR)
    assert not role_at_least(Role.VIEWER, Role.EDITOR)
    assert parse_role(" Editor ") is Role.EDITOR
    with pytest.raises(RoleError, match="the roles are admin, editor, viewer"):
        parse_role("owner")
