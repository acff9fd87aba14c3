"""POST /api/v1/webhooks/<provider>: signed feedback from SES (through SNS), Postmark, Mailgun
and SendGrid, about mail our dispatch really sent to an SMTP sink.

Every hard bounce below names a delivery we sent, by the Message-ID we gave it, and must
suppress its reader; every forged, stale or replayed request must change nothing at all."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from newsletter.mail.transport import close_transports
from newsletter.readers.suppression import is_suppressed
from newsletter.settings import Settings
from newsletter.store.models import DeliveryStatus, SubscriberStatus, SubscriptionStatus
from newsletter.web.api_webhooks import SNS_FETCH
from tests.support.inbound import (
    ALICE,
    BOB,
    World,
    header_block,
    sample,
    snapshot,
    unmatched_reports,
)
from tests.support.smtp import SMTPSink
from tests.support.webhooks import (
    CERT_URL,
    MAILGUN_KEY,
    POSTMARK_PASSWORD,
    POSTMARK_USER,
    TOPIC,
    Fetcher,
    mailgun_signature,
    payload,
    sendgrid_headers,
    sendgrid_public_key,
    ses_notification,
    sns_signed,
)

WEBHOOKS = ("ses", "postmark", "mailgun", "sendgrid")


@pytest.fixture
def settings(settings: Settings, smtp_sink: SMTPSink) -> Settings:
    """conftest's settings sending to the sink, every webhook configured."""
    return replace(
        settings,
        smtp_url=smtp_sink.url,
        smtp_timeout=5.0,
        autopause_min_attempts=10_000,
        ses_topic_arns=(TOPIC,),
        postmark_webhook_user=POSTMARK_USER,
        postmark_webhook_password=POSTMARK_PASSWORD,
        mailgun_signing_key=MAILGUN_KEY,
        sendgrid_public_key=sendgrid_public_key(),
    )


@pytest.fixture
def fetch(app: Flask) -> Fetcher:
    """What the SES route fetches through, instead of the network: the test certificate."""
    fetcher = Fetcher()
    app.extensions[SNS_FETCH] = fetcher
    return fetcher


@pytest.fixture
def world(app: Flask, db: Session, settings: Settings, smtp_sink: SMTPSink) -> Iterator[World]:
    """Readers, and campaigns really sent to them through our dispatch."""
    with app.app_context():
        yield World.build(db, settings, smtp_sink)
    close_transports()


def our_message_id(world: World, address: str, issue_id: int) -> str:
    """The Message-ID we gave the mail one reader got."""
    message_id = world.delivery(address, issue_id).message_id
    assert message_id.startswith("<") and message_id.endswith(">")
    return message_id


def assert_suppressed(world: World, address: str, issue_id: int) -> None:
    """The reader bounced, their delivery marked bounced, the address suppressed."""
    assert world.reader(address).status == SubscriberStatus.BOUNCED
    assert world.delivery(address, issue_id).status == DeliveryStatus.BOUNCED
    assert is_suppressed(world.db, address)


def assert_untouched(world: World, address: str, issue_id: int) -> None:
    """The reader is as the send left them."""
    assert world.reader(address).status == SubscriberStatus.ACTIVE
    assert world.delivery(address, issue_id).status == DeliveryStatus.SENT
    assert not is_suppressed(world.db, address)


def post_json(client: FlaskClient, path: str, body: Any, **headers: str) -> Any:
    """POST a JSON body as providers do."""
    return client.post(
        path, data=json.dumps(body), headers={"Content-Type": "application/json", **headers}
    )


def basic(user: str, password: str) -> str:
    """An HTTP basic Authorization header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def mailgun_body(world: World, issue_id: int, **signature: str) -> dict[str, Any]:
    """A Mailgun permanent failure for Bob's mail, freshly signed unless told otherwise."""
    timestamp = signature.get("timestamp", str(int(time.time())))
    token = signature.get("token", secrets.token_hex(25))
    return payload(
        "mailgun-failed-permanent.json",
        email=BOB,
        # Mailgun writes the Message-ID without its angle brackets.
        message_id=our_message_id(world, BOB, issue_id).strip("<>"),
        timestamp=timestamp,
        token=token,
        signature=signature.get("signature", mailgun_signature(timestamp, token)),
    )


# --- each endpoint is off until its secret is set ------------------------------------------------


@pytest.mark.parametrize("provider", WEBHOOKS)
def test_a_webhook_is_off_until_its_secret_is_set(
    client: FlaskClient, app: Flask, settings: Settings, provider: str
) -> None:
    app.extensions["newsletter.settings"] = replace(
        settings,
        ses_topic_arns=(),
        postmark_webhook_password="",
        mailgun_signing_key="",
        sendgrid_public_key="",
    )
    response = post_json(client, f"/api/v1/webhooks/{provider}", {})
    assert response.status_code == 404
    assert "NEWSLETTER_" in response.get_json()["detail"]


# --- Amazon SES through SNS ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_ses_hard_bounce_suppresses_the_reader_we_mailed(
    client: FlaskClient, world: World, fetch: Fetcher, version: str
) -> None:
    issue_id = world.send()
    message = ses_notification(
        "ses-bounce.json", version, email=BOB, message_id=our_message_id(world, BOB, issue_id)
    )

    response = post_json(client, "/api/v1/webhooks/ses", message)
    assert response.status_code == 200, response.get_json()
    (result,) = response.get_json()["results"]
    assert result["result"] == "bounce" and result["changed"] is True
    assert (result["subscriber_id"], result["issue_id"]) == (world.reader(BOB).id, issue_id)
    assert_suppressed(world, BOB, issue_id)
    assert_untouched(world, ALICE, issue_id)
    assert "5.1.1" in (world.delivery(BOB, issue_id).smtp_response or "")
    assert fetch.seen == [CERT_URL] or fetch.seen == []  # the certificate is cached per process

    # SNS retries: the same notification again changes nothing.
    state = snapshot(world.db)
    again = post_json(client, "/api/v1/webhooks/ses", message)
    assert again.status_code == 200 and again.get_json()["results"][0]["changed"] is False
    assert snapshot(world.db) == state


def test_an_ses_complaint_unsubscribes_and_suppresses(
    client: FlaskClient, world: World, fetch: Fetcher
) -> None:
    issue_id = world.send()
    message = ses_notification(
        "ses-complaint.json", email=BOB, message_id=our_message_id(world, BOB, issue_id)
    )
    response = post_json(client, "/api/v1/webhooks/ses", message)
    assert response.status_code == 200
    assert response.get_json()["results"][0]["result"] == "complaint"
    assert is_suppressed(world.db, BOB)
    statuses = {s.status for s in world.reader(BOB).subscriptions}
    assert statuses == {SubscriptionStatus.UNSUBSCRIBED}


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda m: {**m, "Message": m["Message"].replace("5.1.1", "5.1.2")}, id="body"),
        pytest.param(lambda m: {**m, "Signature": base64.b64encode(b"x" * 256).decode()}, id="sig"),
        pytest.param(lambda m: {k: v for k, v in m.items() if k != "Signature"}, id="unsigned"),
        pytest.param(lambda m: {**m, "SignatureVersion": "3"}, id="version"),
        pytest.param(lambda m: {**m, "Type": "Notification", "Subject": "added"}, id="subject"),
    ],
)
def test_a_forged_sns_message_changes_nothing(
    client: FlaskClient, world: World, fetch: Fetcher, forge: Any
) -> None:
    issue_id = world.send()
    message = ses_notification(
        "ses-bounce.json", email=BOB, message_id=our_message_id(world, BOB, issue_id)
    )
    state, unmatched = snapshot(world.db), unmatched_reports(world.db)

    response = post_json(client, "/api/v1/webhooks/ses", forge(message))
    assert response.status_code == 401
    assert response.get_json()["status"] == 401
    assert snapshot(world.db) == state and unmatched_reports(world.db) == unmatched
    assert_untouched(world, BOB, issue_id)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-x.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
        "https://s3.amazonaws.com/sns.us-east-1/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://sns.us-east-1.amazonaws.com/not-a-certificate",
    ],
)
def test_a_signing_cert_url_off_the_sns_hosts_is_refused_unfetched(
    client: FlaskClient, world: World, fetch: Fetcher, url: str
) -> None:
    issue_id = world.send()
    envelope = payload("sns-notification.json", sns_id="cert-host")
    envelope["Message"] = json.dumps(
        payload("ses-bounce.json", email=BOB, message_id=our_message_id(world, BOB, issue_id))
    )
    envelope["SigningCertURL"] = url
    state = snapshot(world.db)

    response = post_json(client, "/api/v1/webhooks/ses", sns_signed(envelope))
    assert response.status_code == 401
    assert "SigningCertURL" in response.get_json()["detail"]
    assert fetch.seen == []
    assert snapshot(world.db) == state


def test_a_topic_not_ours_is_refused_before_anything_is_fetched(
    client: FlaskClient, world: World, fetch: Fetcher
) -> None:
    issue_id = world.send()
    envelope = payload("sns-notification.json", sns_id="other-topic")
    envelope["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:someone-elses"
    envelope["Message"] = json.dumps(
        payload("ses-bounce.json", email=BOB, message_id=our_message_id(world, BOB, issue_id))
    )
    response = post_json(client, "/api/v1/webhooks/ses", sns_signed(envelope))
    assert response.status_code == 403
    assert "NEWSLETTER_SES_TOPIC_ARNS" in response.get_json()["detail"]
    assert fetch.seen == []
    assert_untouched(world, BOB, issue_id)


def test_an_sns_subscription_confirmation_is_confirmed(
    client: FlaskClient, app: Flask, fetch: Fetcher
) -> None:
    confirmation = sns_signed(payload("sns-subscription-confirmation.json"), "2")
    response = client.post(
        "/api/v1/webhooks/ses", data=json.dumps(confirmation), content_type="text/plain"
    )
    assert response.status_code == 200
    assert response.get_json() == {"result": "subscribed", "topic": TOPIC}
    assert fetch.seen[-1] == confirmation["SubscribeURL"]


def test_a_subscribe_url_off_the_sns_hosts_is_not_visited(
    client: FlaskClient, fetch: Fetcher
) -> None:
    confirmation = payload("sns-subscription-confirmation.json")
    confirmation["SubscribeURL"] = "https://evil.example/?Action=ConfirmSubscription"
    response = post_json(client, "/api/v1/webhooks/ses", sns_signed(confirmation))
    assert response.status_code == 401
    assert "SubscribeURL" in response.get_json()["detail"]
    assert all("evil" not in url for url in fetch.seen)


def test_an_ses_bounce_about_mail_we_did_not_send_is_recorded_unmatched(
    client: FlaskClient, world: World, fetch: Fetcher
) -> None:
    issue_id = world.send()
    # A real Message-ID of ours, but for Alice's mail: it proves nothing about Bob.
    message = ses_notification(
        "ses-bounce.json", email=BOB, message_id=our_message_id(world, ALICE, issue_id)
    )
    before = unmatched_reports(world.db)
    state = snapshot(world.db)
    for _ in range(2):
        response = post_json(client, "/api/v1/webhooks/ses", message)
        assert response.status_code == 200
        assert response.get_json()["results"][0]["result"] == "unmatched"
    assert unmatched_reports(world.db) == before + 1
    assert snapshot(world.db) == state


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"", b"[" * 200_000, b"\xff\xfe"])
@pytest.mark.parametrize("provider", WEBHOOKS)
def test_malformed_json_is_a_400(
    client: FlaskClient, fetch: Fetcher, provider: str, body: bytes
) -> None:
    # Past each provider's check of who sent it, where one comes before the body is read.
    headers = {
        "ses": {},
        "postmark": {"Authorization": basic(POSTMARK_USER, POSTMARK_PASSWORD)},
        "mailgun": {},
        "sendgrid": sendgrid_headers(body, "1764781178"),
    }[provider]
    response = client.post(
        f"/api/v1/webhooks/{provider}", data=body, headers={"Content-Type": "text/plain", **headers}
    )
    assert response.status_code == 400
    assert response.get_json()["status"] == 400


def test_a_postmark_payload_that_is_no_event_is_a_400(client: FlaskClient) -> None:
    auth = basic(POSTMARK_USER, POSTMARK_PASSWORD)
    response = post_json(client, "/api/v1/webhooks/postmark", {"Hello": 1}, Authorization=auth)
    assert response.status_code == 400 and "RecordType" in response.get_json()["detail"]


# --- Postmark ------------------------------------------------------------------------------------


def postmark_bounce(world: World, issue_id: int) -> dict[str, Any]:
    """Postmark's hard bounce for Bob's mail, its dump the remote server's DSN quoting it."""
    (mail,) = [m for m in world.sink.messages if m.rcpt_tos == [BOB]]
    dump = sample(
        "postfix-5.1.1.eml",
        verp="someone@postmark.example",  # Postmark's own return path, not ours
        email=BOB,
        original_headers=header_block(mail.data),
    ).decode()
    return payload("postmark-bounce.json", email=BOB, content=dump)


def test_a_postmark_hard_bounce_suppresses_the_reader_we_mailed(
    client: FlaskClient, world: World
) -> None:
    issue_id = world.send()
    body = postmark_bounce(world, issue_id)
    auth = basic(POSTMARK_USER, POSTMARK_PASSWORD)

    response = post_json(client, "/api/v1/webhooks/postmark", body, Authorization=auth)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["results"][0]["result"] == "bounce"
    assert_suppressed(world, BOB, issue_id)
    assert_untouched(world, ALICE, issue_id)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic(POSTMARK_USER, "wrong"),
        basic("someone", POSTMARK_PASSWORD),
        f"Bearer {POSTMARK_PASSWORD}",
    ],
)
def test_postmark_without_the_credentials_changes_nothing(
    client: FlaskClient, world: World, authorization: str | None
) -> None:
    issue_id = world.send()
    headers = {"Authorization": authorization} if authorization else {}
    state, unmatched = snapshot(world.db), unmatched_reports(world.db)
    response = post_json(
        client, "/api/v1/webhooks/postmark", postmark_bounce(world, issue_id), **headers
    )
    assert response.status_code == 401
    assert "basic auth" in response.get_json()["detail"]
    assert snapshot(world.db) == state and unmatched_reports(world.db) == unmatched


def test_a_postmark_spam_complaint_by_metadata_unsubscribes(
    client: FlaskClient, world: World
) -> None:
    issue_id = world.send()
    body = payload(
        "postmark-spam-complaint.json", email=BOB, message_id=our_message_id(world, BOB, issue_id)
    )
    auth = basic(POSTMARK_USER, POSTMARK_PASSWORD)
    response = post_json(client, "/api/v1/webhooks/postmark", body, Authorization=auth)
    assert response.status_code == 200
    assert response.get_json()["results"][0]["result"] == "complaint"
    assert is_suppressed(world.db, BOB)


# --- Mailgun -------------------------------------------------------------------------------------


def test_a_signed_mailgun_failure_suppresses_the_reader_we_mailed(
    client: FlaskClient, world: World
) -> None:
    issue_id = world.send()
    response = post_json(client, "/api/v1/webhooks/mailgun", mailgun_body(world, issue_id))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["results"][0]["result"] == "bounce"
    assert_suppressed(world, BOB, issue_id)
    assert "5.1.1" in (world.delivery(BOB, issue_id).smtp_response or "")


@pytest.mark.parametrize(
    ("signature", "status"),
    [
        pytest.param({"signature": "0" * 64}, 401, id="forged"),
        pytest.param({"signature": ""}, 401, id="missing"),
        pytest.param({"timestamp": str(int(time.time()) - 301)}, 403, id="old"),
        pytest.param({"timestamp": str(int(time.time()) + 3600)}, 403, id="future"),
        pytest.param({"timestamp": "soon"}, 401, id="not-a-time"),
    ],
)
def test_a_forged_or_stale_mailgun_signature_changes_nothing(
    client: FlaskClient, world: World, signature: dict[str, str], status: int
) -> None:
    issue_id = world.send()
    body = mailgun_body(world, issue_id, **signature)
    state = snapshot(world.db)
    response = post_json(client, "/api/v1/webhooks/mailgun", body)
    assert response.status_code == status
    assert "Mailgun" in response.get_json()["detail"]
    assert snapshot(world.db) == state


def test_a_replayed_mailgun_token_is_refused(client: FlaskClient, world: World) -> None:
    issue_id = world.send()
    body = mailgun_body(world, issue_id)
    assert post_json(client, "/api/v1/webhooks/mailgun", body).status_code == 200
    state = snapshot(world.db)

    replayed = post_json(client, "/api/v1/webhooks/mailgun", body)
    assert replayed.status_code == 403
    assert "replay" in replayed.get_json()["detail"]
    assert snapshot(world.db) == state


# --- SendGrid ------------------------------------------------------------------------------------


def sendgrid_batch(world: World, issue_id: int) -> bytes:
    """SendGrid's batch: a bounce of Bob's mail and the delivery of Alice's."""
    events = payload(
        "sendgrid-events.json",
        email=BOB,
        message_id=our_message_id(world, BOB, issue_id),
        other=ALICE,
        other_message_id=our_message_id(world, ALICE, issue_id),
    )
    return json.dumps(events).encode()


def test_a_signed_sendgrid_bounce_suppresses_the_reader_we_mailed(
    client: FlaskClient, world: World
) -> None:
    issue_id = world.send()
    raw = sendgrid_batch(world, issue_id)
    headers = sendgrid_headers(raw, str(int(time.time())))

    response = client.post("/api/v1/webhooks/sendgrid", data=raw, headers=headers)
    assert response.status_code == 200, response.get_json()
    results = [r["result"] for r in response.get_json()["results"]]
    assert results == ["bounce", "delivered"]
    assert_suppressed(world, BOB, issue_id)
    assert_untouched(world, ALICE, issue_id)


@pytest.mark.parametrize("forgery", ["body", "timestamp", "missing", "garbage"])
def test_a_forged_sendgrid_signature_changes_nothing(
    client: FlaskClient, world: World, forgery: str
) -> None:
    issue_id = world.send()
    raw = sendgrid_batch(world, issue_id)
    timestamp = str(int(time.time()))
    headers = sendgrid_headers(raw, timestamp)
    if forgery == "body":
        raw = raw.replace(b"5.1.1", b"5.1.2")
    elif forgery == "timestamp":
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(int(timestamp) + 1)
    elif forgery == "missing":
        del headers["X-Twilio-Email-Event-Webhook-Signature"]
    else:
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "not base64!"
    state, unmatched = snapshot(world.db), unmatched_reports(world.db)

    response = client.post("/api/v1/webhooks/sendgrid", data=raw, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["status"] == 401
    assert snapshot(world.db) == state and unmatched_reports(world.db) == unmatched


@pytest.mark.parametrize("raw", [b"{broken", b"{}", b"[]"])
def test_signed_but_malformed_sendgrid_json_is_a_400(client: FlaskClient, raw: bytes) -> None:
    response = client.post(
        "/api/v1/webhooks/sendgrid", data=raw, headers=sendgrid_headers(raw, "1764781178")
    )
    assert response.status_code == 400


def test_a_subscription_aws_does_not_confirm_is_a_502_for_sns_to_retry(
    client: FlaskClient, app: Flask
) -> None:
    def down(url: str) -> bytes:
        if url.endswith(".pem"):
            return Fetcher()(url)
        raise ConnectionError("AWS unreachable")

    app.extensions[SNS_FETCH] = down
    confirmation = sns_signed(payload("sns-subscription-confirmation.json"))
    response = post_json(client, "/api/v1/webhooks/ses", confirmation)
    assert response.status_code == 502
    assert "SNS retries" in response.get_json()["detail"]


def test_an_unusable_sendgrid_key_setting_is_a_clear_503(
    client: FlaskClient, app: Flask, settings: Settings
) -> None:
    app.extensions["newsletter.settings"] = replace(settings, sendgrid_public_key="bm90IGEga2V5")
    raw = b"[]"
    response = client.post(
        "/api/v1/webhooks/sendgrid", data=raw, headers=sendgrid_headers(raw, "1764781178")
    )
    assert response.status_code == 503
    assert "NEWSLETTER_SENDGRID_PUBLIC_KEY" in response.get_json()["detail"]
