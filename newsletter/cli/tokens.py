"""``newsletter tokens``: scoped bearer tokens for the JSON API and /metrics (CMS, scripts)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from newsletter.access.api_tokens import (
    ALL,
    SCOPES,
    create_token,
    list_tokens,
    revoke_token,
    scope_list,
    token_scopes,
)
from newsletter.access.users import UserError, get_user
from newsletter.cli.common import ID, domain_session, fail, session, table


@click.group("tokens", cls=AppGroup)
def tokens_group() -> None:
    """Create, list and revoke API tokens."""


EXAMPLE = "newsletter tokens create cms --scope posts:write --scope posts:read"


def _require_scopes(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    """Refuse a create without --scope, listing the scopes and an example (usage error, 2)."""
    if not value:
        raise click.UsageError(
            f"a token needs at least one --scope; the scopes are:\n{SCOPE_HELP}\n"
            f"For example: {EXAMPLE}",
            ctx,
        )
    return value


SCOPE_HELP = f"{scope_list()}\n  {ALL.ljust(max(map(len, SCOPES)))}  every scope above"


@tokens_group.command("create", epilog=f"\b\nScopes:\n{SCOPE_HELP}\n\nFor example: {EXAMPLE}")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice([*SCOPES, ALL]),
    metavar="SCOPE",
    callback=_require_scopes,
    help=f"What the token may do (repeat for several; '{ALL}' grants every scope known now).",
)
@click.option(
    "--user",
    "owner",
    metavar="EMAIL",
    default=None,
    help=f"The console user it belongs to: never more than their role allows ('{ALL}': all it "
    "allows), and it stops when they are disabled.",
)
def create_command(name: str, scopes: tuple[str, ...], owner: str | None) -> None:
    """Create a token called NAME allowed SCOPEs and print it (it is shown only this once)."""
    with domain_session(ValueError, UserError) as db:
        user = get_user(db, owner) if owner is not None else None
        row, plaintext = create_token(db, name, scopes, user=user)
        token_id, granted = row.id, token_scopes(row)
        owned = f" for {user.email}" if user is not None else ""
    click.echo(plaintext)
    click.echo(
        f"Token {token_id} ({name.strip()}) created{owned} with scopes: {' '.join(granted)}. "
        "Store it now: only its hash is kept. Send it as 'Authorization: Bearer <token>'.",
        err=True,
    )


@tokens_group.command("list")
def list_command() -> None:
    """Show every token and its scopes (never the secret itself)."""
    with session() as db:
        rows = [
            (
                t.id,
                t.name,
                "revoked" if t.revoked_at else "active",
                " ".join(token_scopes(t)) or "(none)",
                t.user.email if t.user is not None else "-",
                t.created_at.strftime("%Y-%m-%d %H:%M"),
                t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "never",
            )
            for t in list_tokens(db)
        ]
    if not rows:
        click.echo(f"No API tokens yet. Create one with, e.g.: {EXAMPLE}")
        return
    headers = ["id", "name", "status", "scopes", "owner", "created (UTC)", "last used (UTC)"]
    click.echo(table(headers, rows))


@tokens_group.command("revoke")
@click.argument("token_id", metavar="ID", type=ID)
def revoke_command(token_id: int) -> None:
    """Revoke the token with this ID (see `newsletter tokens list`)."""
    with session() as db:
        revoked = revoke_token(db, token_id)
    if not revoked:
        fail(f"no active token with id {token_id}; see `newsletter tokens list`")
    click.echo(f"Token {token_id} revoked.")


commands = [tokens_group]
