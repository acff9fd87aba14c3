"""What each provider's payload means: which events are hard, soft, complaints or nothing, and
which field carries our Message-ID. Any JSON at all is read without a crash."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.inbound.events import BadPayload, EventKind, Unverified
from newsletter.inbound.providers import mailgun, postmark, sendgrid, ses
from tests.support.webhooks import MAILGUN_KEY, mailgun_signature, payload

OURS = "<1a2b3c@news.example.com>"
BOB = "bob@example.org"


def ses_body(sample: str, **changes: Any) -> dict[str, Any]:
    """An SES notification sample with our Message-ID, some fields changed."""
    body = payload(sample, email=BOB, message_id=OURS)
    for path, value in changes.items():
        section, _, key = path.partition("__")
        body[section][key] = value
    return body


@pytest.mark.parametrize(
    ("bounce_type", "kind"),
    [
        ("Permanent", EventKind.HARD_BOUNCE),
        ("Transient", EventKind.SOFT_BOUNCE),
        ("Undetermined", EventKind.SOFT_BOUNCE),
    ],
)
def test_ses_bounce_types(bounce_type: str, kind: EventKind) -> None:
    (event,) = ses.events(ses_body("ses-bounce.json", bounce__bounceType=bounce_type), "n1")
    assert (event.kind, event.recipient, event.message_id) == (kind, BOB, OURS)
    assert event.status == "5.1.1" and "User unknown" in event.diagnostic
    assert event.envelope == ("newsletter@news.example.com",)


def test_ses_event_publishing_and_common_headers_only() -> None:
    body = ses_body("ses-complaint.json")
    body["eventType"] = body.pop("notificationType")
    del body["mail"]["headers"]
    (event,) = ses.events(body, "n2")
    assert (event.kind, event.message_id) == (EventKind.COMPLAINT, OURS)
    not_spam = ses_body("ses-complaint.json", complaint__complaintFeedbackType="not-spam")
    assert ses.events(not_spam, "n3")[0].kind == EventKind.OTHER


def test_ses_reads_tokens_from_the_returned_list_unsubscribe() -> None:
    body = ses_body("ses-bounce.json")
    body["mail"]["headers"].append(
        {"name": "List-Unsubscribe", "value": "<https://n.example/unsubscribe/abc.def.ghi>"}
    )
    assert ses.events(body, "n4")[0].tokens == ("abc.def.ghi",)


@pytest.mark.parametrize(
    ("record", "kind_name", "kind"),
    [
        ("Bounce", "HardBounce", EventKind.HARD_BOUNCE),
        ("Bounce", "BadEmailAddress", EventKind.HARD_BOUNCE),
        ("Bounce", "SoftBounce", EventKind.SOFT_BOUNCE),
        ("Bounce", "DnsError", EventKind.SOFT_BOUNCE),
        ("Bounce", "SpamComplaint", EventKind.COMPLAINT),
        ("Bounce", "AutoResponder", EventKind.OTHER),
        ("SpamComplaint", "SpamComplaint", EventKind.COMPLAINT),
        ("Delivery", "", EventKind.DELIVERY),
        ("Open", "", EventKind.OTHER),
    ],
)
def test_postmark_record_types(record: str, kind_name: str, kind: EventKind) -> None:
    body = payload("postmark-bounce.json", email=BOB, content="")
    body.update(RecordType=record, Type=kind_name, Metadata={"message-id": OURS})
    (event,) = postmark.events(body)
    assert (event.kind, event.message_id, event.recipient) == (kind, OURS, BOB)


def test_postmark_credentials_are_both_checked() -> None:
    postmark.verify("u", "p", "u", "p")
    for user, password in [("u", "x"), ("x", "p"), ("", ""), ("u", "p ")]:
        with pytest.raises(Unverified):
            postmark.verify("u", "p", user, password)


@pytest.mark.parametrize(
    ("event_name", "severity", "kind"),
    [
        ("failed", "permanent", EventKind.HARD_BOUNCE),
        ("failed", "temporary", EventKind.SOFT_BOUNCE),
        ("complained", "", EventKind.COMPLAINT),
        ("delivered", "", EventKind.DELIVERY),
        ("opened", "", EventKind.OTHER),
    ],
)
def test_mailgun_events(event_name: str, severity: str, kind: EventKind) -> None:
    body = payload(
        "mailgun-failed-permanent.json", email=BOB, message_id=OURS.strip("<>"), timestamp="1"
    )
    body["event-data"].update(event=event_name, severity=severity)
    (event,) = mailgun.events(body)
    assert (event.kind, event.message_id, event.status) == (kind, OURS, "5.1.1")


@pytest.mark.parametrize("timestamp", ["nan", "inf", "-inf", "1e400"])
def test_a_mailgun_timestamp_that_is_no_time_is_refused(timestamp: str) -> None:
    body = {"signature": {"timestamp": timestamp, "token": "t" * 50}}
    body["signature"]["signature"] = mailgun_signature(timestamp, "t" * 50)
    with pytest.raises(Unverified):
        mailgun.verify(MAILGUN_KEY, body, time.time(), lambda _token: True)


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"event": "bounce", "type": "bounce"}, EventKind.HARD_BOUNCE),
        ({"event": "bounce", "type": "blocked"}, EventKind.SOFT_BOUNCE),
        ({"event": "dropped", "reason": "Bounced Address"}, EventKind.SOFT_BOUNCE),
        ({"event": "spamreport"}, EventKind.COMPLAINT),
        ({"event": "delivered"}, EventKind.DELIVERY),
        ({"event": "click"}, EventKind.OTHER),
    ],
)
def test_sendgrid_events(event: dict[str, str], kind: EventKind) -> None:
    raw = json.dumps([{"email": BOB, "smtp-id": OURS, "sg_event_id": "e1", **event}]).encode()
    (read,) = sendgrid.events(raw)
    assert (read.kind, read.message_id, read.recipient) == (kind, OURS, BOB)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)
KEYS = st.sampled_from(
    ["bounce", "complaint", "mail", "delivery", "headers", "Headers", "event-data", "message"]
)
SHAPED = st.dictionaries(KEYS | st.text(max_size=12), JSON, max_size=6)


@hypothesis_settings(max_examples=150, deadline=None)
@given(body=SHAPED, kind=st.sampled_from(["Bounce", "Complaint", "Delivery", "Open", ""]))
def test_any_json_is_read_or_refused_as_bad_payload(body: dict[str, Any], kind: str) -> None:
    for read in (
        lambda: ses.events({**body, "notificationType": kind}, "id"),
        lambda: postmark.events({**body, "RecordType": kind or "Bounce"}),
        lambda: mailgun.events({"event-data": {**body, "event": kind.lower()}}),
        lambda: sendgrid.events(json.dumps([{**body, "event": kind.lower()}]).encode()),
    ):
        with contextlib.suppress(BadPayload):
            read()
