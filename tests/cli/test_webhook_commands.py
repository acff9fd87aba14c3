"""``newsletter webhooks``: add (the secret printed once), list, enable, disable, deliveries,
test and remove, with a clear message and exit status 1 for what it refuses."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from newsletter.cli import cli
from newsletter.hooks.signing import signing_key
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, get_sessionmaker
from newsletter.store.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

PUBLIC = "https://93.184.215.14/hooks"  # a public address literal: no DNS needed


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """NEWSLETTER_* for the test database, set in this process."""
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NEWSLETTER_ENV", "testing")
    monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "")
    yield settings
    dispose_engines()


def invoke(*args: str) -> Result:
    """Run the command group in-process (stderr apart from stdout)."""
    return CliRunner().invoke(cli, ["webhooks", *args], catch_exceptions=False)


def endpoints(settings: Settings) -> list[WebhookEndpoint]:
    """Every endpoint row."""
    with get_sessionmaker(settings.database_url)() as db:
        return list(db.scalars(select(WebhookEndpoint)))


def test_add_prints_the_secret_alone_on_stdout_and_list_never_shows_it(cli_env: Settings) -> None:
    added = invoke("add", PUBLIC, "--event", "subscriber.confirmed", "--description", "CRM")
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip()
    assert len(signing_key(secret)) == 32
    assert "Webhook 1 created for subscriber.confirmed" in added.stderr
    (row,) = endpoints(cli_env)
    assert (row.url, row.event_types, row.description, row.secret) == (
        PUBLIC,
        ["subscriber.confirmed"],
        "CRM",
        secret,
    )
    listed = invoke("list")
    assert listed.exit_code == 0
    assert PUBLIC in listed.output and "subscriber.confirmed" in listed.output
    assert secret not in listed.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["http://127.0.0.1:9/hooks"], "127.0.0.1 is a loopback address"),
        (["ftp://example.com/"], "must start with https://"),
    ],
)
def test_add_refuses_with_a_message_and_exit_1(
    cli_env: Settings, args: list[str], words: str
) -> None:
    result = invoke("add", *args)
    assert result.exit_code == 1
    assert words in result.output
    assert endpoints(cli_env) == []


def test_an_unknown_event_type_is_a_usage_error(cli_env: Settings) -> None:
    result = invoke("add", PUBLIC, "--event", "subscriber.deleted")
    assert result.exit_code == 2
    assert "subscriber.confirmed" in result.output  # the choices are listed


def test_disable_enable_test_deliveries_and_remove(cli_env: Settings) -> None:
    assert invoke("list").output.startswith("No webhook endpoints yet")
    invoke("add", PUBLIC)
    assert invoke("disable", "1").output.strip() == "Webhook 1 disabled."
    assert "disabled: disabled by hand" in invoke("list").output
    refused = invoke("test", "1")
    assert refused.exit_code == 1 and "enable it first" in refused.output
    assert invoke("enable", "1").exit_code == 0
    assert endpoints(cli_env)[0].enabled

    assert invoke("deliveries", "1").output.strip() == "No deliveries to webhook 1 yet."
    queued = invoke("test", "1")
    assert queued.exit_code == 0 and "Ping queued as delivery 1" in queued.output
    shown = invoke("deliveries", "1").output
    assert "ping  pending  0 attempt(s)" in shown

    assert invoke("remove", "1").output.strip() == "Webhook 1 removed."
    assert endpoints(cli_env) == []
    with get_sessionmaker(cli_env.database_url)() as db:
        assert db.scalars(select(WebhookDelivery)).all() == []


@pytest.mark.parametrize("command", ["enable", "disable", "remove", "deliveries", "test"])
def test_an_unknown_id_is_an_error_naming_it(cli_env: Settings, command: str) -> None:
    result = invoke(command, "7")
    assert result.exit_code == 1
    assert "no webhook endpoint with id 7" in result.output


def test_deliveries_show_a_receivers_answer_without_its_control_characters(
    cli_env: Settings,
) -> None:
    invoke("add", PUBLIC)
    with get_sessionmaker(cli_env.database_url)() as db:
        delivery = WebhookDelivery(
            endpoint_id=1, message_id="msg_1", event_type="ping", payload={}, attempts=1
        )
        db.add(delivery)
        db.flush()
        db.add(
            WebhookAttempt(
                delivery_id=delivery.id, status_code=500, response_body="\x1b[2Jgone\r\nwrong"
            )
        )
        db.commit()
    shown = invoke("deliveries", "1").output
    assert "HTTP 500" in shown and "[2Jgone wrong" in shown
    assert "\x1b" not in shown and "\r" not in shown
