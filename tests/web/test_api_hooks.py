"""/api/v1/webhooks: registering outbound endpoints (the secret shown once), changing, testing
and removing them, and their deliveries with every attempt's answer. Scopes are checked for
every route in test_api.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.hooks import sending
from newsletter.hooks.endpoints import register
from newsletter.settings import Settings
from newsletter.store.models import WebhookDelivery, WebhookEndpoint
from tests.support.webhook_receiver import WebhookReceiver
from tests.web.test_api import bearer

PUBLIC = "https://93.184.215.14/hooks"  # a public address literal: no DNS needed


@pytest.fixture
def headers(db: Session) -> dict[str, str]:
    """A token allowed to read and write webhooks."""
    return bearer(db, "webhooks:read", "webhooks:write")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A Standard Webhooks receiver on 127.0.0.1."""
    server = WebhookReceiver().start()
    yield server
    server.stop()


def create(client: FlaskClient, headers: dict[str, str], **body: Any) -> Any:
    """POST /api/v1/webhooks."""
    return client.post("/api/v1/webhooks", json=body, headers=headers)


def test_create_shows_the_secret_once_and_never_again(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    answer = create(client, headers, url=PUBLIC, events=["subscriber.confirmed"], description="CRM")
    assert answer.status_code == 201, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["secret"].startswith("whsec_")
    hook = body["webhook"]
    assert (hook["url"], hook["events"], hook["all_events"], hook["enabled"]) == (
        PUBLIC,
        ["subscriber.confirmed"],
        False,
        True,
    )
    listed = client.get("/api/v1/webhooks", headers=headers)
    shown = client.get(f"/api/v1/webhooks/{hook['id']}", headers=headers)
    for text in (listed.get_data(as_text=True), shown.get_data(as_text=True)):
        assert body["secret"] not in text and "secret" not in text
    assert shown.get_json()["webhook"]["id"] == hook["id"]


def test_no_events_means_every_event(client: FlaskClient, headers: dict[str, str]) -> None:
    hook = create(client, headers, url=PUBLIC).get_json()["webhook"]
    assert (hook["events"], hook["all_events"]) == ([], True)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({}, "url", "required"),
        ({"url": "ftp://example.com/x"}, "url", "https://"),
        ({"url": "https://"}, "url", "https://"),
        ({"url": "https://user:pw@93.184.215.14/"}, "url", "no user or password"),
        ({"url": "http://127.0.0.1:8080/hooks"}, "url", "127.0.0.1 is a loopback address"),
        ({"url": "http://localhost/hooks"}, "url", "localhost is this machine"),
        ({"url": "http://10.1.2.3/hooks"}, "url", "NEWSLETTER_WEBHOOK_ALLOW_PRIVATE_NETWORKS"),
        ({"url": "http://[::1]/hooks"}, "url", "loopback"),
        ({"url": PUBLIC, "events": ["subscriber.deleted"]}, "events", "unknown event type"),
        ({"url": PUBLIC, "events": "issue.sent"}, "events", "a list"),
        ({"url": 5}, "url", "a string"),
        ({"url": PUBLIC, "description": "x" * 501}, "description", "longer than 500"),
    ],
)
def test_a_bad_registration_is_a_400_naming_the_field_and_stores_nothing(
    client: FlaskClient,
    db: Session,
    headers: dict[str, str],
    body: dict[str, Any],
    field: str,
    words: str,
) -> None:
    answer = create(client, headers, **body)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    error = answer.get_json()["error"]
    assert error["field"] == field
    assert words in error["message"]
    assert db.scalar(select(func.count(WebhookEndpoint.id))) == 0


def test_a_body_that_is_no_json_object_is_a_400(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    answer = client.post("/api/v1/webhooks", data="[]", headers=headers)
    assert answer.status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/webhooks/99"),
        ("PATCH", "/api/v1/webhooks/99"),
        ("DELETE", "/api/v1/webhooks/99"),
        ("GET", "/api/v1/webhooks/99/deliveries"),
        ("POST", "/api/v1/webhooks/99/test"),
        ("GET", f"/api/v1/webhooks/{2**64}"),
    ],
)
def test_an_unknown_id_is_a_404(
    client: FlaskClient, headers: dict[str, str], method: str, path: str
) -> None:
    answer = client.open(path, method=method, json={}, headers=headers)
    assert answer.status_code == 404
    assert answer.get_json()["error"]["status"] == 404


def test_patch_disables_enables_and_changes_what_it_is_given(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    hook_id = create(client, headers, url=PUBLIC).get_json()["webhook"]["id"]
    path = f"/api/v1/webhooks/{hook_id}"
    off = client.patch(path, json={"enabled": False}, headers=headers).get_json()["webhook"]
    assert (off["enabled"], off["disabled_reason"]) == (False, "disabled by hand")
    assert client.post(f"{path}/test", headers=headers).status_code == 409  # enable it first
    on = client.patch(
        path, json={"enabled": True, "events": ["issue.sent"], "description": "BI"}, headers=headers
    ).get_json()["webhook"]
    assert (on["enabled"], on["disabled_reason"], on["events"], on["description"]) == (
        True,
        "",
        ["issue.sent"],
        "BI",
    )
    assert on["url"] == PUBLIC
    bad = client.patch(path, json={"url": "http://127.0.0.1/", "events": []}, headers=headers)
    assert bad.status_code == 400
    assert client.get(path, headers=headers).get_json()["webhook"]["events"] == ["issue.sent"]
    assert client.patch(path, json={"enabled": "yes"}, headers=headers).status_code == 400


def test_delete_removes_the_endpoint_with_its_deliveries(
    client: FlaskClient, db: Session, headers: dict[str, str]
) -> None:
    hook_id = create(client, headers, url=PUBLIC).get_json()["webhook"]["id"]
    assert client.post(f"/api/v1/webhooks/{hook_id}/test", headers=headers).status_code == 202
    assert client.delete(f"/api/v1/webhooks/{hook_id}", headers=headers).get_json() == {
        "id": hook_id,
        "deleted": True,
    }
    assert client.get(f"/api/v1/webhooks/{hook_id}", headers=headers).status_code == 404
    assert db.scalar(select(func.count(WebhookDelivery.id))) == 0


class Inline:
    """A WebhookQueue that only notes what it is given (the test makes the attempts)."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def deliver(self, delivery_id: int, countdown: float = 0) -> None:
        """Note it."""
        self.ids.append(delivery_id)


def test_test_sends_a_signed_ping_whose_attempts_and_answers_are_listed(
    client: FlaskClient,
    db: Session,
    settings: Settings,
    headers: dict[str, str],
    receiver: WebhookReceiver,
) -> None:
    lan = replace(settings, webhook_allow_private_networks=True, webhook_retry_base_seconds=0)
    endpoint = register(db, lan, receiver.url)
    db.commit()
    receiver.secret = endpoint.secret
    receiver.fail_next = 1

    answer = client.post(f"/api/v1/webhooks/{endpoint.id}/test", headers=headers)
    assert answer.status_code == 202
    delivery_id = answer.get_json()["delivery_id"]
    queue = Inline()
    assert sending.deliver(lan, delivery_id, queue).result == sending.Result.RETRY
    assert sending.deliver(lan, delivery_id, queue).result == sending.Result.DELIVERED
    assert [r.verified for r in receiver.received] == [True, True]
    assert receiver.received[0].event["type"] == "ping"

    listed = client.get(f"/api/v1/webhooks/{endpoint.id}/deliveries", headers=headers)
    (shown,) = listed.get_json()["deliveries"]
    assert (shown["id"], shown["event_type"], shown["status"], shown["attempts"]) == (
        delivery_id,
        "ping",
        "delivered",
        2,
    )
    assert shown["payload"]["data"]["endpoint_id"] == endpoint.id
    assert [(a["status_code"], a["response_body"], a["error"]) for a in shown["attempt_log"]] == [
        (500, "receiver trouble", "answered HTTP 500"),
        (200, "ok", ""),
    ]
    bad = client.get(f"/api/v1/webhooks/{endpoint.id}/deliveries?limit=0", headers=headers)
    assert bad.status_code == 400
