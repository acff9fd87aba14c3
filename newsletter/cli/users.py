"""``newsletter users``: console accounts (the first admin, roles, disabling, TOTP, sessions)."""

from __future__ import annotations

import sys
from datetime import datetime

import click
from flask.cli import AppGroup

from newsletter.access.console_sessions import live_sessions, revoke_all
from newsletter.access.passwords import PasswordError
from newsletter.access.roles import Role
from newsletter.access.users import (
    UserError,
    create_user,
    disable_user,
    enable_user,
    get_user,
    list_users,
    require_totp,
    set_role,
)
from newsletter.cli.common import domain_session, settings, table

ROLES = click.Choice([role.value for role in Role], case_sensitive=False)
EXAMPLE = "newsletter users create you@example.com --role admin"
ACCOUNT_ERRORS = (UserError, PasswordError)


@click.group("users", cls=AppGroup)
def users_group() -> None:
    """Console accounts: create, list, change roles, disable, require TOTP, sessions."""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "never"


@users_group.command("create")
@click.argument("email")
@click.option("--role", "role", type=ROLES, required=True, help="admin, editor or viewer.")
@click.option("--name", default="", help="A display name shown in the console.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (one line; asked for, hidden, at a terminal) "
    "instead of printing a one-time one.",
)
def create_command(email: str, role: str, name: str, password_stdin: bool) -> None:
    """Create a console account for EMAIL with ROLE.

    Without --password-stdin a one-time password is printed (only this once); the first login
    asks for a new one.
    """
    password = None
    if password_stdin and sys.stdin.isatty():
        # Typed by a person: hidden, and twice, as a password prompt should be.
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    elif password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    with domain_session(*ACCOUNT_ERRORS) as db:
        user, one_time = create_user(db, email, Role(role.lower()), name=name, password=password)
        address, granted = user.email, user.role.value
    if one_time is not None:
        click.echo(one_time)
        click.echo(
            f"User {address} created as {granted}. That is a one-time password, shown only now: "
            f"the first login at {settings().base_url}/console/ asks for a new one.",
            err=True,
        )
    else:
        click.echo(f"User {address} created as {granted}.")


@users_group.command("list")
def list_command() -> None:
    """Show every account: role, state, two-factor and last login."""
    with domain_session(*ACCOUNT_ERRORS) as db:
        rows = [
            (
                u.email,
                u.display_name,
                u.role.value,
                "disabled" if u.disabled_at else "active",
                ("on" if u.totp_secret else "off") + (" (required)" if u.totp_required else ""),
                _when(u.last_login_at),
            )
            for u in list_users(db)
        ]
    if not rows:
        click.echo(f"No console accounts yet. Make the first admin with: {EXAMPLE}")
        return
    headers = ["email", "name", "role", "state", "two-factor", "last login (UTC)"]
    click.echo(table(headers, rows))


@users_group.command("set-role")
@click.argument("email")
@click.argument("role", type=ROLES)
def set_role_command(email: str, role: str) -> None:
    """Give EMAIL's account ROLE (their API tokens follow at once)."""
    with domain_session(*ACCOUNT_ERRORS) as db:
        user = set_role(db, get_user(db, email), Role(role.lower()))
        address, granted = user.email, user.role.value
    click.echo(f"User {address} is now {granted}.")


@users_group.command("disable")
@click.argument("email")
def disable_command(email: str) -> None:
    """Disable EMAIL's account: no login, no API token; its sessions end now."""
    with domain_session(*ACCOUNT_ERRORS) as db:
        user = get_user(db, email)
        ended = disable_user(db, user)
        address = user.email
    click.echo(f"User {address} disabled; {ended} session(s) ended.")


@users_group.command("enable")
@click.argument("email")
def enable_command(email: str) -> None:
    """Let EMAIL's disabled account log in again."""
    with domain_session(*ACCOUNT_ERRORS) as db:
        address = enable_user(get_user(db, email)).email
    click.echo(f"User {address} enabled.")


@users_group.command("require-totp")
@click.argument("email")
@click.option("--off", is_flag=True, help="No longer require it (the user may keep TOTP on).")
def require_totp_command(email: str, off: bool) -> None:
    """Require a TOTP code at every login of EMAIL (they enrol at their next login)."""
    with domain_session(*ACCOUNT_ERRORS) as db:
        address = require_totp(get_user(db, email), not off).email
    if off:
        click.echo(f"User {address} no longer needs a second factor.")
    else:
        click.echo(f"User {address} now needs a TOTP code at every login.")


@users_group.command("sessions")
@click.argument("email")
def sessions_command(email: str) -> None:
    """List EMAIL's live console sessions."""
    with domain_session(*ACCOUNT_ERRORS) as db:
        user = get_user(db, email)
        rows = [
            (
                s.id,
                s.ip or "-",
                s.user_agent[:60] or "-",
                _when(s.created_at),
                _when(s.last_seen_at),
            )
            for s in live_sessions(db, settings(), user.id)
        ]
        address = user.email
    if not rows:
        click.echo(f"{address} has no live sessions.")
        return
    click.echo(table(["id", "ip", "browser", "logged in (UTC)", "last seen (UTC)"], rows))


@users_group.command("revoke-sessions")
@click.argument("email")
def revoke_sessions_command(email: str) -> None:
    """Log EMAIL out everywhere."""
    with domain_session(*ACCOUNT_ERRORS) as db:
        user = get_user(db, email)
        ended = revoke_all(db, user.id)
        address = user.email
    click.echo(f"{ended} session(s) of {address} ended.")


commands = [users_group]
