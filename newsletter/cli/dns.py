"""``newsletter dns``: the DKIM, SPF and DMARC records to publish, and whether they are there."""

from __future__ import annotations

import click

from newsletter.cli.common import fail, settings
from newsletter.mail.dns_records import State, look_up, records, resolver


@click.command("dns")
@click.option(
    "--no-check",
    "offline",
    is_flag=True,
    help="Only print the records; do not look up what is published.",
)
def dns_command(offline: bool) -> None:
    """Print the DNS records the sending domain needs, then check what its DNS holds.

    DKIM (the configured key's public half), SPF for the envelope sender's domain (the relay's
    include where it is a known service) and a DMARC record to start with (p=none with reports).
    Each is then looked up (NEWSLETTER_DNS_NAMESERVERS, else the system's resolvers): ok,
    missing, different, or unknown when no answer could be had. Exit 1 when a record is
    missing or different, 0 otherwise.
    """
    config = settings()
    wanted = records(config)
    if not any(r.kind == "DKIM" for r in wanted):
        click.echo(
            "DKIM: no key configured (NEWSLETTER_DKIM_KEY_FILE, _SELECTOR, _DOMAIN); create "
            "one with `openssl genrsa -out dkim.pem 2048`, then run this again.\n"
        )
    for record in wanted:
        click.echo(f"{record.kind}: {record.why}")
        click.echo(f"  {record.zone_line()}\n")
    if offline:
        return
    try:
        ask = resolver(config.dns_nameservers)
    except ValueError:
        fail("NEWSLETTER_DNS_NAMESERVERS: give ip, ip:port or [v6]:port, comma-separated", 2)
    wrong = 0
    click.echo("Published:")
    for record in wanted:
        found = look_up(record, ask)
        click.echo(f"  {found.state.value:<9} {record.kind:<5} {record.name}: {found.detail}")
        wrong += found.state in (State.MISSING, State.DIFFERENT)
    if wrong:
        fail(f"{wrong} record(s) to publish or fix; mailbox providers check them on every mail")


commands = [dns_command]
