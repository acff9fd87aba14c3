"""`newsletter users …` and `tokens create --user`, in-process against a real SQLite database."""

from __future__ import annotations

from click.testing import CliRunner, Result
from sqlalchemy import select

from newsletter.access.api_tokens import authenticate, token_scopes
from newsletter.access.console_sessions import live_sessions, start_session
from newsletter.access.logins import Outcome, check_password
from newsletter.cli import cli
from newsletter.settings import Settings
from newsletter.store.db import session_scope
from newsletter.store.models import User
from tests.cli import test_commands
from tests.cli.test_commands import database_url, invoke

# The fixtures of the command tests: a fresh SQLite database under tmp_path, migrated.
cli_env = test_commands.cli_env
migrated_env = test_commands.migrated_env

PASSWORD = "a long enough passphrase"


def invoke_with_input(text: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), input=text, catch_exceptions=False)


def user_row(env: dict[str, str], email: str) -> User:
    with session_scope(database_url(env)) as db:
        user = db.scalars(select(User).where(User.email == email)).one()
        db.expunge(user)
        return user


def test_the_first_admin_gets_a_one_time_password_that_logs_in(
    migrated_env: dict[str, str],
) -> None:
    result = invoke("users", "create", "You@Example.com", "--role", "admin", "--name", "You")
    assert result.exit_code == 0, result.output
    one_time = result.stdout.strip()
    assert len(one_time) >= 12 and "\n" not in one_time
    assert "User you@example.com created as admin" in result.stderr
    assert "one-time password" in result.stderr and "/console/" in result.stderr
    settings = Settings.from_env()
    with session_scope(database_url(migrated_env)) as db:
        login = check_password(db, settings, "you@example.com", one_time)
        assert login.outcome is Outcome.OK and login.user is not None
        assert login.user.must_change_password and login.user.display_name == "You"


def test_a_password_from_stdin_is_checked_and_not_printed(migrated_env: dict[str, str]) -> None:
    result = invoke_with_input(
        f"{PASSWORD}\n", "users", "create", "ed@example.com", "--role", "editor", "--password-stdin"
    )
    assert result.exit_code == 0 and PASSWORD not in result.output
    assert result.stdout.strip() == "User ed@example.com created as editor."
    assert not user_row(migrated_env, "ed@example.com").must_change_password
    short = invoke_with_input(
        "short\n", "users", "create", "bo@example.com", "--role", "viewer", "--password-stdin"
    )
    assert short.exit_code == 1 and "at least 12 characters" in short.stderr
    assert "bo@example.com" not in invoke("users", "list").stdout  # nothing half-stored


def test_bad_input_is_a_message_and_an_exit_code(migrated_env: dict[str, str]) -> None:
    assert invoke("users", "create", "a@example.com", "--role", "admin").exit_code == 0
    duplicate = invoke("users", "create", "A@example.com", "--role", "viewer")
    assert duplicate.exit_code == 1 and "already an account" in duplicate.stderr
    bad_role = invoke("users", "create", "b@example.com", "--role", "owner")
    assert bad_role.exit_code == 2 and "'owner' is not one of" in bad_role.stderr
    bad_address = invoke("users", "create", "not-an-address", "--role", "viewer")
    assert bad_address.exit_code == 1 and "is not an email address" in bad_address.stderr
    unknown = invoke("users", "set-role", "ghost@example.com", "editor")
    assert unknown.exit_code == 1 and "newsletter users list" in unknown.stderr


def test_list_set_role_disable_enable_and_require_totp(migrated_env: dict[str, str]) -> None:
    empty = invoke("users", "list")
    assert empty.exit_code == 0 and "newsletter users create you@example.com" in empty.stdout
    invoke("users", "create", "admin@example.com", "--role", "admin")
    invoke("users", "create", "ed@example.com", "--role", "editor")
    last_admin = invoke("users", "set-role", "admin@example.com", "viewer")
    assert last_admin.exit_code == 1 and "only enabled admin" in last_admin.stderr
    assert invoke("users", "set-role", "ED@example.com", "viewer").stdout.strip() == (
        "User ed@example.com is now viewer."
    )
    settings = Settings.from_env()
    with session_scope(database_url(migrated_env)) as db:
        user = db.scalars(select(User).where(User.email == "ed@example.com")).one()
        start_session(db, settings, user)
    disabled = invoke("users", "disable", "ed@example.com")
    assert disabled.stdout.strip() == "User ed@example.com disabled; 1 session(s) ended."
    listed = invoke("users", "list").stdout.splitlines()
    assert listed[0].split() == [
        "email",
        "name",
        "role",
        "state",
        "two-factor",
        "last",
        "login",
        "(UTC)",
    ]
    assert any(
        "ed@example.com" in line and "viewer" in line and "disabled" in line for line in listed
    )
    assert invoke("users", "enable", "ed@example.com").exit_code == 0
    assert user_row(migrated_env, "ed@example.com").disabled_at is None
    assert invoke("users", "require-totp", "ed@example.com").exit_code == 0
    assert user_row(migrated_env, "ed@example.com").totp_required
    assert "(required)" in invoke("users", "list").stdout


def test_sessions_and_revoke_sessions(migrated_env: dict[str, str]) -> None:
    invoke("users", "create", "ann@example.com", "--role", "viewer")
    assert "no live sessions" in invoke("users", "sessions", "ann@example.com").stdout
    settings = Settings.from_env()
    with session_scope(database_url(migrated_env)) as db:
        user = db.scalars(select(User)).one()
        start_session(db, settings, user, ip="192.0.2.7", user_agent="Firefox")
    shown = invoke("users", "sessions", "ann@example.com").stdout
    assert "192.0.2.7" in shown and "Firefox" in shown
    assert invoke("users", "revoke-sessions", "ann@example.com").stdout.strip() == (
        "1 session(s) of ann@example.com ended."
    )
    with session_scope(database_url(migrated_env)) as db:
        assert live_sessions(db, settings, user.id) == []


def test_tokens_for_a_user_stay_within_their_role(migrated_env: dict[str, str]) -> None:
    invoke("users", "create", "vi@example.com", "--role", "viewer")
    beyond = invoke("tokens", "create", "cms", "--scope", "posts:write", "--user", "vi@example.com")
    assert beyond.exit_code == 1
    assert "vi@example.com is a viewer, whose tokens cannot have posts:write" in beyond.stderr
    ghost = invoke("tokens", "create", "cms", "--scope", "posts:read", "--user", "no@example.com")
    assert ghost.exit_code == 1 and "no account" in ghost.stderr
    made = invoke("tokens", "create", "reader", "--scope", "all", "--user", "vi@example.com")
    assert made.exit_code == 0 and "created for vi@example.com" in made.stderr
    with session_scope(database_url(migrated_env)) as db:
        token = authenticate(db, made.stdout.strip())
        assert token is not None
        assert token_scopes(token) and all(s.endswith(":read") for s in token_scopes(token))
    assert "vi@example.com" in invoke("tokens", "list").stdout
