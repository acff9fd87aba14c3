"""An issue's deliveries over the JSON API: reader by reader with status and SMTP answer, in
keyset pages, filtered by status; personal data, so behind subscribers:read."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from newsletter.access.api_tokens import create_token
from newsletter.issues import lifecycle
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import Delivery, DeliveryStatus, NewsletterKind
from tests.support import dispatching as seed
from tests.web.test_openapi import assert_problem


def bearer(db: Session, *scopes: str) -> dict[str, str]:
    _, plaintext = create_token(db, "tests", scopes)
    db.commit()
    return {"Authorization": f"Bearer {plaintext}"}


def test_an_issues_deliveries_page_by_reader_with_their_smtp_answers(
    client: FlaskClient, db: Session, settings: Settings
) -> None:
    offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    readers = [seed.reader(db, f"r{n}@example.com", [offers]) for n in range(5)]
    issue = lifecycle.create_campaign(db, settings, offers, subject="Sale", body_html="<p>Hi</p>")
    other = lifecycle.create_campaign(db, settings, offers, subject="Other", body_html="<p>x</p>")
    fates = [
        (DeliveryStatus.SENT, 250, "250 2.0.0 Ok: queued as ABC"),
        (DeliveryStatus.FAILED, 550, "550 5.1.1 <r1@example.com>: user unknown"),
        (DeliveryStatus.SENT, 250, "250 ok"),
        (DeliveryStatus.QUEUED, None, ""),
        (DeliveryStatus.SENT, 250, "250 ok"),
    ]
    for subscriber, (status, code, answer) in zip(readers, fates, strict=True):
        db.add(
            Delivery(
                issue_id=issue.id,
                subscriber_id=subscriber.id,
                status=status,
                attempts=1 if code else 0,
                smtp_code=code,
                smtp_response=answer,
                sent_at=utcnow() if status == DeliveryStatus.SENT else None,
            )
        )
    db.add(Delivery(issue_id=other.id, subscriber_id=readers[0].id, status=DeliveryStatus.SENT))
    db.commit()
    auth = bearer(db, "subscribers:read")
    url = f"/api/v1/issues/{issue.id}/deliveries"
    pages, after = [], ""
    while True:
        response = client.get(f"{url}?limit=2{after}", headers=auth)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        pages.append([d["email"] for d in body["items"]])
        if body["next"] is None:
            break
        after = f"&after={body['next']}"
    assert pages == [
        ["r0@example.com", "r1@example.com"],
        ["r2@example.com", "r3@example.com"],
        ["r4@example.com"],
    ]
    [failed] = client.get(f"{url}?status=failed", headers=auth).get_json()["items"]
    assert failed["subscriber_id"] == readers[1].id
    assert (failed["smtp_code"], failed["attempts"]) == (550, 1)
    assert "user unknown" in failed["smtp_response"] and failed["sent_at"] is None
    sent = client.get(f"{url}?status=sent", headers=auth).get_json()["items"]
    assert [d["email"] for d in sent] == ["r0@example.com", "r2@example.com", "r4@example.com"]

    assert_problem(client.get("/api/v1/issues/99999/deliveries", headers=auth), 404)
    assert_problem(client.get(f"{url}?status=lost", headers=auth), 400)
    assert assert_problem(client.get(f"{url}?after=bm9wZQ", headers=auth), 400)["field"] == "after"
    narrow = client.get(url, headers=bearer(db, "issues:read"))
    assert assert_problem(narrow, 403)["scope"] == "subscribers:read"
