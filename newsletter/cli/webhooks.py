"""``newsletter webhooks``: outbound webhook endpoints for the site's own systems (a CRM)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from newsletter.cli.common import ID, domain_session, session, settings, table
from newsletter.hooks.endpoints import (
    EndpointNotFound,
    WebhookError,
    deliveries,
    get_endpoint,
    list_endpoints,
    register,
    remove,
    send_test,
    update,
)
from newsletter.hooks.events import EVENT_TYPES

EVENT_HELP = "\n".join(f"  {name.ljust(24)}  {text}" for name, text in EVENT_TYPES.items())
EXAMPLE = "newsletter webhooks add https://crm.example.com/hooks --event subscriber.confirmed"


@click.group("webhooks", cls=AppGroup)
def webhooks_group() -> None:
    """Register, list, test and remove outbound webhook endpoints."""


@webhooks_group.command("add", epilog=f"\b\nEvent types:\n{EVENT_HELP}\n\nFor example: {EXAMPLE}")
@click.argument("url")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(list(EVENT_TYPES)),
    metavar="TYPE",
    help="An event type to send (repeat for several; none means every event type).",
)
@click.option("--description", default="", help="What the endpoint is for, e.g. 'CRM'.")
def add_command(url: str, events: tuple[str, ...], description: str) -> None:
    """Register an endpoint at URL and print its signing secret (shown only this once)."""
    with domain_session(WebhookError) as db:
        endpoint = register(db, settings(), url, events=events, description=description)
        endpoint_id, secret = endpoint.id, endpoint.secret
        what = ", ".join(endpoint.event_types) or "every event type"
    click.echo(secret)
    click.echo(
        f"Webhook {endpoint_id} created for {what}. Store the secret now: receivers verify "
        "the webhook-signature header with it (see the README, 'Webhooks').",
        err=True,
    )


@webhooks_group.command("list")
def list_command() -> None:
    """Show every endpoint: its URL, events and state (never its secret)."""
    with session() as db:
        rows = [
            (
                e.id,
                "enabled" if e.enabled else f"disabled: {e.disabled_reason}",
                e.url,
                ", ".join(e.event_types) or "all",
                e.description,
            )
            for e in list_endpoints(db)
        ]
    if not rows:
        click.echo(f"No webhook endpoints yet. Add one with, e.g.: {EXAMPLE}")
        return
    click.echo(table(["id", "state", "url", "events", "description"], rows))


def _set_enabled(endpoint_id: int, enabled: bool) -> None:
    """Enable or disable an endpoint, or fail saying there is none with that id."""
    with domain_session(WebhookError, EndpointNotFound) as db:
        update(db, settings(), get_endpoint(db, endpoint_id), enabled=enabled)


@webhooks_group.command("enable")
@click.argument("endpoint_id", metavar="ID", type=ID)
def enable_command(endpoint_id: int) -> None:
    """Enable an endpoint again (its pending deliveries resume, its failure counts restart)."""
    _set_enabled(endpoint_id, True)
    click.echo(f"Webhook {endpoint_id} enabled.")


@webhooks_group.command("disable")
@click.argument("endpoint_id", metavar="ID", type=ID)
def disable_command(endpoint_id: int) -> None:
    """Disable an endpoint: no new events for it, pending ones wait."""
    _set_enabled(endpoint_id, False)
    click.echo(f"Webhook {endpoint_id} disabled.")


@webhooks_group.command("remove")
@click.argument("endpoint_id", metavar="ID", type=ID)
def remove_command(endpoint_id: int) -> None:
    """Remove an endpoint with its deliveries."""
    with domain_session(EndpointNotFound) as db:
        remove(db, get_endpoint(db, endpoint_id))
    click.echo(f"Webhook {endpoint_id} removed.")


@webhooks_group.command("deliveries")
@click.argument("endpoint_id", metavar="ID", type=ID)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def deliveries_command(endpoint_id: int, limit: int) -> None:
    """An endpoint's latest deliveries, newest first, with each attempt's answer."""
    with domain_session(EndpointNotFound) as db:
        get_endpoint(db, endpoint_id)
        lines: list[str] = []
        for d in deliveries(db, endpoint_id, limit=limit):
            when = d.created_at.strftime("%Y-%m-%d %H:%M:%S")
            lines.append(
                f"{d.id}  {when}  {d.event_type}  {d.status.value}  {d.attempts} attempt(s)"
            )
            for a in d.attempt_rows:
                answer = f"HTTP {a.status_code}" if a.status_code is not None else "no answer"
                detail = a.error if a.status_code is None else a.response_body[:80]
                lines.append(
                    f"    {a.attempted_at.strftime('%H:%M:%S')}  {answer}  {a.duration_ms} ms"
                    + (f"  {_printable(detail)}" if detail else "")
                )
    if not lines:
        click.echo(f"No deliveries to webhook {endpoint_id} yet.")
        return
    click.echo("\n".join(lines))


def _printable(text: str) -> str:
    """A receiver's words on one line, without the control characters a terminal would obey."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


@webhooks_group.command("test")
@click.argument("endpoint_id", metavar="ID", type=ID)
def test_command(endpoint_id: int) -> None:
    """Queue a signed ping event to an endpoint (a worker sends it)."""
    with domain_session(EndpointNotFound, WebhookError) as db:
        delivery_id = send_test(db, get_endpoint(db, endpoint_id))
    click.echo(
        f"Ping queued as delivery {delivery_id}; see `newsletter webhooks deliveries "
        f"{endpoint_id}` for the answer."
    )


commands = [webhooks_group]
