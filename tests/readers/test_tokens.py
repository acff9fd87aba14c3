"""Mailed links: signed, bound to one address and one consent record, scoped, revocable."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from newsletter.readers import links
from newsletter.readers.signup import Signup, confirm_token_for, subscribe
from newsletter.readers.tokens import (
    ConfirmClaim,
    ManageClaim,
    address_digest,
    make_confirm_token,
    make_manage_token,
)
from newsletter.settings import Settings
from newsletter.store.models import ConsentRecord, Subscriber, SubscriberStatus, SubscriptionStatus
from tests.support.readers import Lists, add_subscriber, make_lists, row_counts


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


@pytest.fixture
def pending(db: Session, settings: Settings, lists: Lists) -> tuple[Subscriber, ConsentRecord]:
    result = subscribe(
        db,
        settings,
        Signup(email="tok@example.com", newsletter_ids=(lists.daily.id,), consent_text="t"),
    )
    db.commit()
    subscriber = db.get(Subscriber, result.subscriber_id)
    record = db.get(ConsentRecord, result.consent_id)
    assert subscriber is not None and record is not None
    return subscriber, record


def confirm_token(settings: Settings, claim: ConfirmClaim, secret: str | None = None) -> str:
    return make_confirm_token(secret or settings.secret_key, claim)


def test_valid_confirm_token_works(
    client: FlaskClient, settings: Settings, db: Session, pending: tuple[Subscriber, ConsentRecord]
) -> None:
    token = confirm_token_for(settings, db, pending[1].id)
    assert client.post(f"/confirm/{token}").status_code == 200
    db.expire_all()
    assert db.get(Subscriber, pending[0].id).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


@pytest.mark.parametrize("flaw", ["other address", "unknown nonce", "other subscriber", "secret"])
def test_confirm_tokens_that_do_not_match_are_400(
    client: FlaskClient,
    settings: Settings,
    db: Session,
    lists: Lists,
    pending: tuple[Subscriber, ConsentRecord],
    flaw: str,
) -> None:
    subscriber, record = pending
    other = add_subscriber(db, "other@example.com", SubscriberStatus.PENDING, [lists.daily])
    claim = ConfirmClaim(
        subscriber.id, address_digest(subscriber.email_key), (lists.daily.id,), record.nonce
    )
    secret = None
    if flaw == "other address":
        claim = ConfirmClaim(claim.subscriber_id, address_digest("x@example.com"), (), claim.nonce)
    elif flaw == "unknown nonce":
        claim = ConfirmClaim(claim.subscriber_id, claim.address, claim.newsletter_ids, "nope")
    elif flaw == "other subscriber":
        # A nonce from one signup cannot confirm another reader.
        claim = ConfirmClaim(
            other.id, address_digest(other.email_key), claim.newsletter_ids, claim.nonce
        )
    else:
        secret = "another-secret-key-that-is-long-enough-000000"
    before = row_counts(db)
    token = confirm_token(settings, claim, secret)
    for response in (client.get(f"/confirm/{token}"), client.post(f"/confirm/{token}")):
        assert response.status_code == 400
    assert row_counts(db) == before
    db.expire_all()
    assert db.get(Subscriber, subscriber.id).status == SubscriberStatus.PENDING  # type: ignore[union-attr]


def test_a_manage_token_is_no_confirm_token_and_vice_versa(
    client: FlaskClient, settings: Settings, db: Session, pending: tuple[Subscriber, ConsentRecord]
) -> None:
    subscriber, record = pending
    manage = links.manage_token(settings, links.subscriber_claim(subscriber))
    assert client.post(f"/confirm/{manage}").status_code == 400
    confirm = confirm_token_for(settings, db, record.id)
    assert client.get(f"/unsubscribe/{confirm}").status_code == 400
    assert client.get(f"/preferences/{confirm}").status_code == 400
    assert (
        client.post(f"/unsubscribe/{confirm}", data={"List-Unsubscribe": "One-Click"}).status_code
        == 400
    )


def test_unsubscribe_token_is_scoped_to_its_list(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists
) -> None:
    reader = add_subscriber(
        db, "scope@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.offers]
    )
    token = links.unsubscribe_token(settings, links.subscriber_claim(reader, lists.offers.id))
    client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    db.expire_all()
    found = {s.newsletter_id: s.status for s in db.get(Subscriber, reader.id).subscriptions}  # type: ignore[union-attr]
    assert found == {
        lists.daily.id: SubscriptionStatus.ACTIVE,
        lists.offers.id: SubscriptionStatus.UNSUBSCRIBED,
    }


def test_tokens_for_deleted_readers_other_addresses_and_old_versions_are_404(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists
) -> None:
    reader = add_subscriber(db, "ver@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    here = address_digest(reader.email_key)
    stale = make_manage_token(
        settings.secret_key, ManageClaim(reader.id, reader.token_version - 1, here)
    )
    ghost = make_manage_token(settings.secret_key, ManageClaim(reader.id + 1000, 0, here))
    # The same row id signed for another address: a reader erased and the id given again.
    elsewhere = make_manage_token(
        settings.secret_key,
        ManageClaim(reader.id, reader.token_version, address_digest("old@example.com")),
    )
    for token in (ghost, elsewhere):
        assert client.get(f"/preferences/{token}").status_code == 404
        assert client.get(f"/unsubscribe/{token}").status_code == 404
    # An old version opens no preferences; it may still unsubscribe (RFC 8058), nothing else.
    assert client.get(f"/preferences/{stale}").status_code == 404
    page = client.get(f"/unsubscribe/{stale}")
    assert page.status_code == 200
    assert 'value="pause"' not in page.text and "/preferences/" not in page.text
    refused = client.post(f"/unsubscribe/{stale}", data={"action": "pause", "weeks": "2"})
    assert refused.status_code == 404
    left = client.post(f"/unsubscribe/{stale}", data={"action": "all"})
    assert left.status_code == 200 and 'name="undo"' not in left.text
    db.expire_all()
    assert db.get(Subscriber, reader.id).status == SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]


def test_tokens_carry_no_address(settings: Settings, lists: Lists, db: Session) -> None:
    import base64

    reader = add_subscriber(db, "secret.reader@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    for url in (
        links.preferences_url(settings, links.subscriber_claim(reader)),
        links.unsubscribe_url(settings, links.subscriber_claim(reader, lists.daily.id)),
    ):
        payload = url.rsplit("/", 1)[1].split(".")[0]
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        assert b"secret.reader" not in decoded and b"example.com" not in decoded
