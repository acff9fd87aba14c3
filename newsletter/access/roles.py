"""Console roles and what each may do: a rule over scope names, not a list that drifts.

A viewer may use every scope that ends in ``:read``; an editor every scope but the admin-only
ones (those on users, settings and tokens); an admin everything. A scope added to
:data:`newsletter.access.api_tokens.SCOPES` later falls under the same rule by its name.
"""

from __future__ import annotations

from newsletter.store.models import ApiToken
from newsletter.store.models import UserRole as Role

__all__ = [
    "ADMIN_ONLY_RESOURCES",
    "RANK",
    "Role",
    "may_override",
    "parse_role",
    "role_allows",
    "role_at_least",
]

# The resources only an admin may touch: who has an account, how the service is configured,
# and the keys to the API.
ADMIN_ONLY_RESOURCES = frozenset({"users", "settings", "tokens"})
# Each role may do everything the roles below it may.
RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.ADMIN: 2}


class RoleError(ValueError):
    """A role name that is not one of ours."""


def parse_role(name: str) -> Role:
    """The role called ``name`` (any case), or RoleError naming the roles."""
    try:
        return Role(name.strip().lower())
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise RoleError(f"unknown role {name!r}; the roles are {names}") from None


def is_admin_only(scope: str) -> bool:
    """True for a scope on an admin-only resource (``users:write``, ``settings:read``, …)."""
    return scope.partition(":")[0] in ADMIN_ONLY_RESOURCES


def role_allows(role: Role, scope: str) -> bool:
    """May a user with ``role`` use ``scope``?"""
    if role == Role.ADMIN:
        return True
    if role == Role.EDITOR:
        return not is_admin_only(scope)
    return scope.endswith(":read") and not is_admin_only(scope)


def role_at_least(role: Role, minimum: Role) -> bool:
    """True when ``role`` is ``minimum`` or above it (admin > editor > viewer)."""
    return RANK[role] >= RANK[minimum]


def may_override(token: ApiToken) -> bool:
    """May this token override a safety check (the pre-send check)? Admins' and ops' tokens."""
    # A token without an owner was made by ops on the command line, who run the service.
    return token.user is None or token.user.role == Role.ADMIN
