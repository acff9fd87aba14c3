"""``newsletter tokens``: bearer tokens for the JSON API (the CMS, scripts)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from newsletter.access.api_tokens import create_token, list_tokens, revoke_token
from newsletter.cli.common import ID, domain_session, fail, session, table


@click.group("tokens", cls=AppGroup)
def tokens_group() -> None:
    """Create, list and revoke API tokens."""


@tokens_group.command("create")
@click.argument("name")
def create_command(name: str) -> None:
    """Create a token called NAME and print it (it is shown only this once)."""
    with domain_session(ValueError) as db:
        row, plaintext = create_token(db, name)
        token_id = row.id
    click.echo(plaintext)
    click.echo(
        f"Token {token_id} ({name.strip()}) created. Store it now: only its hash is kept. "
        "Send it as 'Authorization: Bearer <token>'.",
        err=True,
    )


@tokens_group.command("list")
def list_command() -> None:
    """Show every token (never the secret itself)."""
    with session() as db:
        rows = [
            (
                t.id,
                t.name,
                "revoked" if t.revoked_at else "active",
                t.created_at.strftime("%Y-%m-%d %H:%M"),
                t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "never",
            )
            for t in list_tokens(db)
        ]
    if not rows:
        click.echo("No API tokens yet. Create one with: newsletter tokens create NAME")
        return
    click.echo(table(["id", "name", "status", "created (UTC)", "last used (UTC)"], rows))


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
